// Collectives (all-to-all(v), two-stage dispatch plans, all-reduce, all-gather, reduce-scatter)
// as dependency graphs of flows on a shared FlowNetwork, over a group of GPUs.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "core/units.h"
#include "models/network/flow_network.h"
#include "topologies/topology.h"

namespace moesim {

// An n x n byte matrix over a group's members, row = sender, row-major.
struct ByteMatrix {
  int n = 0;
  std::vector<int64_t> bytes;

  ByteMatrix() = default;
  explicit ByteMatrix(int size) : n(size), bytes(static_cast<size_t>(size) * size, 0) {}
  int64_t& at(int src, int dst) { return bytes[static_cast<size_t>(src) * n + dst]; }
  int64_t at(int src, int dst) const { return bytes[static_cast<size_t>(src) * n + dst]; }
  // Every ordered pair (i, j), i != j, carries per_pair bytes; the diagonal is zero.
  static ByteMatrix uniform(int size, int64_t per_pair);
};

enum class CollectiveOp : uint8_t { kAllToAll, kAllReduce, kAllGather, kReduceScatter };
// kDirect: all pairs at once. kPairwise: n-1 rounds, round r sends i -> (i+r) mod n, a GPU
// starting round r+1 once its round-r send and receive have arrived. kHierarchical: across
// nodes, once over the network to the destination node's GPU on the sender's rail, then NVLink.
// kRing: ring algorithms. kTree: a binary tree (heap order over the group), reduce to the root
// then broadcast, each pipelined in `chunks` pieces (a simple binary tree, not NCCL's double one).
enum class CollectiveAlgo : uint8_t { kDirect, kPairwise, kHierarchical, kRing, kTree };

std::string_view to_string(CollectiveOp op);
std::string_view to_string(CollectiveAlgo algo);
// Throw std::invalid_argument listing the accepted names.
CollectiveOp parse_collective_op(std::string_view name);
CollectiveAlgo parse_collective_algo(std::string_view name);

// The pieces a pipelined collective cuts each transfer into by default: a step's two-stage
// dispatch and combine, `moesim collective --chunks` and `moesim moe-collective --chunks`.
// DeepEP's normal (internode) kernels send each channel's tokens over RDMA in chunks of
// Config::num_max_rdma_chunked_send_tokens (tens of tokens at most) into a receive ring of
// num_max_rdma_chunked_recv_tokens, and its forwarder passes each chunk on over NVLink as soon
// as it has arrived: the relay starts after a small fraction of a transfer, far finer than 4
// pieces. 8 is what the DeepEP validation runs with (tests/validation/README.md), where the
// model's combine still comes out a few percent low for its coarser overlap.
inline constexpr int kDefaultPipelineChunks = 8;

struct CollectiveOptions {
  // Pieces each stage is cut into, so that a later stage starts on piece c as soon as piece c
  // has arrived (hierarchical and two-stage plans, tree).
  int chunks = kDefaultPipelineChunks;
  // Hierarchical all-to-all in the combine direction: NVLink first, to the GPU of the sender's
  // node on the destination's rail, then one network transfer per rail.
  bool reverse = false;
};

// What a collective did. Vectors are indexed by the group member's position in the group.
struct CollectiveResult {
  Time start;
  Time end;                      // when the last transfer arrived
  std::vector<Time> gpu_finish;  // when that member received its last byte (start if none)
  std::vector<std::array<int64_t, kLinkKinds>> sent_bytes;
  std::vector<std::array<int64_t, kLinkKinds>> received_bytes;
  uint64_t flows = 0;

  Time duration() const { return end - start; }
};

struct CollectiveId {
  uint32_t value = 0;
};

class CollectiveObserver {
 public:
  virtual void on_collective_done(CollectiveId id, uint64_t tag,
                                  const CollectiveResult& result) = 0;

 protected:
  ~CollectiveObserver() = default;
};

// Starts collectives on a shared FlowNetwork; any number may run at once (on the same or
// different groups), sharing links. Group members are global GPU indices, distinct. A result
// is handed to the observer once, when the collective's last transfer arrives.
class Collectives {
 public:
  explicit Collectives(FlowNetwork& network);
  ~Collectives();
  Collectives(const Collectives&) = delete;
  Collectives& operator=(const Collectives&) = delete;

  // All-to-all(v) of a group-local matrix (row = sender) by kDirect, kPairwise or kHierarchical.
  CollectiveId all_to_all(const std::vector<int>& group, const ByteMatrix& matrix,
                          CollectiveAlgo algo, CollectiveObserver* observer, uint64_t tag = 0,
                          const CollectiveOptions& options = {});
  // Two stages: first[i][k] bytes from member i to relay k, then second[k][j] from relay k to
  // member j; relay k starts piece c of all its second-stage sends once piece c of every
  // first-stage transfer into it has arrived (a sender streams its first-stage pieces to a
  // relay back to back, as one flow; a relay's forwards do not wait for one another). direct (may
  // be empty) goes at once, unstaged.
  CollectiveId two_stage(const std::vector<int>& group, const ByteMatrix& first,
                         const ByteMatrix& second, const ByteMatrix& direct,
                         CollectiveObserver* observer, uint64_t tag = 0,
                         const CollectiveOptions& options = {});
  // bytes is the per-GPU buffer as nccl-tests counts it: all-reduce's buffer, all-gather's
  // output (n pieces of bytes/n), reduce-scatter's input (n pieces). kRing, or kTree for
  // all-reduce.
  CollectiveId all_reduce(const std::vector<int>& group, Bytes bytes, CollectiveAlgo algo,
                          CollectiveObserver* observer, uint64_t tag = 0,
                          const CollectiveOptions& options = {});
  CollectiveId all_gather(const std::vector<int>& group, Bytes bytes, CollectiveObserver* observer,
                          uint64_t tag = 0);
  CollectiveId reduce_scatter(const std::vector<int>& group, Bytes bytes,
                              CollectiveObserver* observer, uint64_t tag = 0);

  size_t running() const;

  class Run;

 private:
  CollectiveId launch(std::unique_ptr<Run> run);
  friend class Run;
  void finished(uint32_t slot);

  FlowNetwork& network_;
  std::vector<std::unique_ptr<Run>> runs_;
  std::vector<uint32_t> free_slots_;
  size_t running_ = 0;
};

// One collective, synchronously: its own Engine and NetworkModel, run to completion.
struct CollectiveSpec {
  CollectiveOp op = CollectiveOp::kAllToAll;
  CollectiveAlgo algo = CollectiveAlgo::kDirect;
  std::vector<int> group;  // empty: every GPU of the topology
  Bytes bytes;             // per-GPU buffer (nccl-tests' size); all-to-all sends bytes/n per pair
  ByteMatrix matrix;       // all-to-all only: overrides bytes when non-empty
  CollectiveOptions options;
  NetworkOptions network;
};
CollectiveResult run_collective(const Topology& topology, const CollectiveSpec& spec);

}  // namespace moesim
