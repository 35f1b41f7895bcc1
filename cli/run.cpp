// `moesim run`: until the MoE step simulation lands, a self-demo of the event engine
// (the hold model: N pending events, each schedules one more at an exponential delay).
#include <boost/program_options.hpp>
#include <iostream>

#include "cli/commands.h"
#include "sim/engine/engine.h"

namespace moesim::cli {
namespace {

class HoldModel final : public EventHandler {
 public:
  HoldModel(Engine& engine, double mean_delay_ps, uint64_t total)
      : engine_(engine), rng_(engine.random_stream("hold")), mean_(mean_delay_ps), left_(total) {}
  void on_event(uint64_t tag) override {
    if (left_ == 0) return;
    --left_;
    engine_.schedule_after(Time::ps(1 + static_cast<int64_t>(rng_.exponential(mean_))), *this, tag);
  }
  RandomStream& rng() { return rng_; }

 private:
  Engine& engine_;
  RandomStream rng_;
  double mean_;
  uint64_t left_;
};

}  // namespace

int run_command(int argc, char** argv) {
  namespace po = boost::program_options;
  uint64_t seed = 1;
  uint64_t pending = 1000;
  uint64_t events = 1'000'000;
  po::options_description opts("moesim run [options]");
  opts.add_options()("help,h", "show this help")("seed", po::value(&seed)->default_value(1),
                                                  "random seed")(
      "pending", po::value(&pending)->default_value(1000), "events pending at once")(
      "events", po::value(&events)->default_value(1'000'000), "events to run");
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(opts).run(), vm);
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return 0;
  }
  po::notify(vm);

  Engine engine(seed);
  HoldModel model(engine, 1e6, events);
  for (uint64_t i = 0; i < pending; ++i) {
    engine.schedule_at(Time::ps(1 + static_cast<int64_t>(model.rng().exponential(1e6))), model, i);
  }
  engine.run();
  std::cout << "moesim engine self-demo (hold model)\n"
            << "  pending events     " << pending << "\n"
            << "  events run         " << engine.events_run() << "\n"
            << "  simulated time     " << engine.now().to_us() << " us\n";
  return 0;
}

}  // namespace moesim::cli
