// SimGrid 3.32's network model reduced to pure max-min sharing, the configuration in which it
// is an oracle for moesim's exact tier: one definition for the oracle test and the benchmark.
#pragma once

#include <simgrid/s4u.hpp>

#include <string>
#include <utility>
#include <vector>

namespace moesim::test {

// The command line sg4::Engine is started with: CM02 with its latency and bandwidth factors at
// 1, weight-S and TCP-gamma at 0 (no RTT weighting, no window limit), cross-traffic off (on by
// default in 3.32: it would load each link's reverse direction with acknowledgements), and the
// solver's precisions at 1e-12 so that near-equal shares are not merged.
class PureMaxMinArgs {
 public:
  explicit PureMaxMinArgs(std::string program)
      : args_{std::move(program),
              "--log=root.thres:critical",
              "--cfg=network/model:CM02",
              "--cfg=network/latency-factor:1",
              "--cfg=network/bandwidth-factor:1",
              "--cfg=network/weight-S:0",
              "--cfg=network/TCP-gamma:0",
              "--cfg=network/crosstraffic:0",
              "--cfg=surf/precision:1e-12",
              "--cfg=maxmin/precision:1e-12"} {
    for (std::string& a : args_) argv_.push_back(a.data());
    argv_.push_back(nullptr);
    argc_ = static_cast<int>(args_.size());
  }
  PureMaxMinArgs(const PureMaxMinArgs&) = delete;
  PureMaxMinArgs& operator=(const PureMaxMinArgs&) = delete;

  // For sg4::Engine(int*, char**), which may consume the arguments it reads.
  int* argc() { return &argc_; }
  char** argv() { return argv_.data(); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> argv_;
  int argc_ = 0;
};

}  // namespace moesim::test
