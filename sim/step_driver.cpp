#include "sim/step_driver.h"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>

#include "models/moe/parameter_count.h"

namespace moesim {

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::kAttention:
      return "attention";
    case Phase::kDenseFfn:
      return "dense_ffn";
    case Phase::kTpCollective:
      return "tp_collective";
    case Phase::kDispatch:
      return "dispatch";
    case Phase::kExpertCompute:
      return "expert_compute";
    case Phase::kCombine:
      return "combine";
    case Phase::kPipeline:
      return "pipeline";
    case Phase::kGradientSync:
      return "gradient_sync";
    case Phase::kOptimizer:
      return "optimizer";
    case Phase::kIdle:
      return "idle";
  }
  return "?";
}

std::vector<int32_t> stage_first_layers(int32_t layers, int32_t stages) {
  std::vector<int32_t> first{0};
  for (int32_t st = 0; st < stages; ++st) {
    first.push_back(first.back() + layers / stages + (st < layers % stages ? 1 : 0));
  }
  return first;
}

namespace {

enum class OpKind : uint8_t { kCompute, kCollective };

struct Op {
  OpKind kind;
  Phase phase;
  bool backward;
  int32_t micro_batch;
  int32_t layer;  // model layer, -1 outside layers
  Time duration;  // compute
  uint32_t collective;
};

enum class CollectiveKind : uint8_t {
  kAllGather,
  kReduceScatter,
  kAllReduce,
  kSendRecv,
  kMoeDispatch,
  kMoeCombine
};

struct Collective {
  CollectiveKind kind;
  Phase phase;
  bool backward;
  int32_t micro_batch;
  std::vector<int32_t> members;
  Bytes bytes;  // per member (ring collectives) or the message (send/recv)
  const MoeLayerTraffic* traffic = nullptr;
  int32_t moe_layer = -1;  // which slot `traffic` is (with micro_batch and dp_rank)
  int32_t dp_rank = -1;
  Bytes per_token;
  bool reverse_pattern = false;  // play the traffic as a combine
  int32_t arrived = 0;
  int32_t done = 0;
  Time launch;
  Time finish;
  // Send/receive only: the sender posts and goes on; the receiver waits for the data.
  bool delivered = false;
  bool receiver_waiting = false;
};

// The order of (micro-batch, backward) work on pipeline stage `stage` of `stages` in 1F1B:
// warm-up forwards, then one forward and one backward alternately, then the remaining backwards.
std::vector<std::pair<int32_t, bool>> one_f_one_b(int32_t stage, int32_t stages,
                                                  int32_t micro_batches, bool training) {
  std::vector<std::pair<int32_t, bool>> order;
  if (!training) {
    for (int32_t m = 0; m < micro_batches; ++m) order.emplace_back(m, false);
    return order;
  }
  const int32_t warmup = std::min(stages - stage - 1, micro_batches);
  int32_t next_forward = 0;
  int32_t next_backward = 0;
  for (; next_forward < warmup; ++next_forward) order.emplace_back(next_forward, false);
  while (next_forward < micro_batches) {
    order.emplace_back(next_forward++, false);
    order.emplace_back(next_backward++, true);
  }
  while (next_backward < micro_batches) order.emplace_back(next_backward++, true);
  return order;
}

}  // namespace

struct StepDriver::Impl {
  Engine& engine;
  FlowNetwork& network;
  StepSetup setup;
  Collectives network_collectives;
  ExchangeBytes exchange_bytes;
  StepDriver* owner = nullptr;

  int32_t world = 0;
  std::vector<int32_t> stage_first_layer;  // per stage, plus the end
  std::vector<int32_t> moe_index_of_layer;
  int32_t moe_layers = 0;

  // Per-step state.
  const StepTraffic* traffic = nullptr;
  const AwaitTrafficSlot* await_slot = nullptr;
  const StepProgress* progress = nullptr;
  int32_t collectives_finished = 0;
  std::vector<uint8_t> slot_ready;  // [micro_batch][moe_layer][dp_rank], once awaited
  std::vector<std::vector<Op>> programs;
  std::vector<size_t> pc;
  std::vector<Time> arrival;  // when the GPU reached its current collective
  std::vector<Collective> collectives;
  std::map<std::tuple<int, int, int, int, int, int>, uint32_t> collective_index;
  StepMeasurement m;
  int32_t gpus_running = 0;
  std::vector<Time> attention_max, expert_max;  // per forward (micro_batch, layer)

  Impl(Engine& e, FlowNetwork& n, const StepSetup& s)
      : engine(e), network(n), setup(s), network_collectives(n) {}

  int32_t layers() const { return setup.model->layers; }
  int32_t tp() const { return setup.plan->tp; }
  int32_t tokens_in_tp_group() const { return setup.tokens_per_gpu * tp(); }

  uint32_t find_collective(std::tuple<int, int, int, int, int, int> key, Collective proto) {
    auto [it, inserted] = collective_index.try_emplace(key, 0);
    if (inserted) {
      it->second = static_cast<uint32_t>(collectives.size());
      collectives.push_back(std::move(proto));
    }
    return it->second;
  }

  void add_compute(int32_t gpu, Phase phase, bool backward, int32_t mb, int32_t layer, Time t) {
    programs[gpu].push_back(Op{OpKind::kCompute, phase, backward, mb, layer, t, 0});
  }
  void add_collective(int32_t gpu, uint32_t index) {
    const Collective& c = collectives[index];
    programs[gpu].push_back(
        Op{OpKind::kCollective, c.phase, c.backward, c.micro_batch, -1, Time::zero(), index});
  }

  // Members of GPU (a, b, d, s)'s tensor-parallel group.
  std::vector<int32_t> tp_group(int32_t b, int32_t d, int32_t s) const {
    std::vector<int32_t> g;
    for (int32_t a = 0; a < tp(); ++a) g.push_back(setup.plan->gpu_of(a, b, d, s));
    return g;
  }

  void add_tp_collective(int32_t gpu, CollectiveKind kind, int32_t b, int32_t d, int32_t s,
                         int32_t mb, int32_t layer, bool backward, int32_t sub) {
    if (tp() == 1) return;
    Collective c{};
    c.kind = kind;
    c.phase = Phase::kTpCollective;
    c.backward = backward;
    c.micro_batch = mb;
    c.members = tp_group(b, d, s);
    c.bytes = Bytes(int64_t{setup.tokens_per_gpu} * setup.model->hidden_size * 2);
    const auto key = std::make_tuple(static_cast<int>(kind), mb, layer * 4 + sub, backward ? 1 : 0,
                                     c.members.front(), 0);
    add_collective(gpu, find_collective(key, std::move(c)));
  }

  void add_exchange(int32_t gpu, bool dispatch_pattern, Phase phase, int32_t d, int32_t s,
                    int32_t mb, int32_t layer, bool backward) {
    if (setup.plan->ep == 1) return;
    const int32_t moe = moe_index_of_layer[layer];
    Collective c{};
    c.kind = dispatch_pattern ? CollectiveKind::kMoeDispatch : CollectiveKind::kMoeCombine;
    c.phase = phase;
    c.backward = backward;
    c.micro_batch = mb;
    c.traffic = &(*traffic)[mb][moe][d];
    c.moe_layer = moe;
    c.dp_rank = d;
    c.reverse_pattern = !dispatch_pattern;
    // Forward dispatch sends activations in the dispatch format; everything else (combine and
    // both backward exchanges, which carry gradients) in the combine format.
    c.per_token = (dispatch_pattern && !backward) ? setup.model->dispatch_bytes_per_token()
                                                  : setup.model->combine_bytes_per_token();
    for (int32_t e = 0; e < setup.plan->ep; ++e) {
      for (int32_t a = 0; a < tp(); ++a) c.members.push_back(setup.plan->gpu_of(a, e, d, s));
    }
    const auto key = std::make_tuple(static_cast<int>(c.kind), mb, layer, backward ? 1 : 0, d, s);
    add_collective(gpu, find_collective(key, std::move(c)));
  }

  void add_send_recv(int32_t gpu, int32_t from, int32_t to, int32_t mb, bool backward) {
    Collective c{};
    c.kind = CollectiveKind::kSendRecv;
    c.phase = Phase::kPipeline;
    c.backward = backward;
    c.micro_batch = mb;
    c.members = {from, to};
    c.bytes = Bytes(int64_t{setup.tokens_per_gpu} * setup.model->hidden_size * 2);
    const auto key = std::make_tuple(static_cast<int>(c.kind), mb, 0, backward ? 1 : 0, from, to);
    add_collective(gpu, find_collective(key, std::move(c)));
  }

  // Compute times shared by every GPU of a layer (forward).
  Time attention_time() const {
    const ModelSpec& model = *setup.model;
    const GpuModel& g = *setup.gpu;
    const Dtype dt = model.weights.dtype;
    const int64_t tokens = tokens_in_tp_group();
    const int64_t proj_cols = model.attention_params() / (int64_t{tp()} * model.hidden_size);
    Time t = g.gemm(tokens, proj_cols, model.hidden_size, dt);
    const bool decode = setup.kind == StepKind::kDecode;
    const AttentionShape shape = attention_shape(model, tp(), decode);
    if (decode) {
      t += g.attention_decode(tokens, setup.kv_context_length, shape, Dtype::kBf16);
    } else {
      const int64_t length = std::min<int64_t>(setup.sequence_length, tokens);
      const int64_t sequences = std::max<int64_t>(1, tokens / std::max<int64_t>(1, length));
      t += g.attention_prefill(sequences, length, shape, dt, true);
    }
    return t;
  }
  Time dense_ffn_time() const {
    const ModelSpec& model = *setup.model;
    return setup.gpu->gemm(tokens_in_tp_group(),
                           int64_t{model.ffn_matrices} * model.dense_ffn_size / tp(),
                           model.hidden_size, model.weights.dtype);
  }
  Time gate_and_shared_time() const {
    const ModelSpec& model = *setup.model;
    const GpuModel& g = *setup.gpu;
    Time t = g.gemm(tokens_in_tp_group(), model.routed_experts, model.hidden_size, Dtype::kFp32);
    if (model.shared_experts > 0) {
      t += g.gemm(tokens_in_tp_group(),
                  int64_t{model.ffn_matrices} * model.shared_experts * model.expert_ffn_size / tp(),
                  model.hidden_size, model.weights.dtype);
    }
    return t;
  }
  Time lm_head_time() const {
    const ModelSpec& model = *setup.model;
    if (model.vocab_size == 0) return Time::zero();
    return setup.gpu->gemm(tokens_in_tp_group(), model.vocab_size / tp(), model.hidden_size,
                           model.weights.dtype);
  }
  // Blocks until the slot may be read (see run_step).
  void ensure_slot(int32_t mb, int32_t moe, int32_t d) {
    const auto slot = static_cast<size_t>(traffic_slot(mb, moe, d, moe_layers, setup.plan->dp));
    if (slot_ready[slot]) return;
    if (*await_slot) (*await_slot)(mb, moe, d);
    slot_ready[slot] = 1;
  }

  // Read when the GPU reaches the op, as the layer's traffic may still be being routed before.
  Time expert_time(int32_t gpu, int32_t mb, int32_t layer, int32_t d) {
    const ModelSpec& model = *setup.model;
    const int32_t moe = moe_index_of_layer[layer];
    ensure_slot(mb, moe, d);
    const auto& counts = (*traffic)[mb][moe][d].tokens_per_local_expert[gpu];
    return setup.gpu->grouped_expert_ffn(counts, model.hidden_size, model.expert_ffn_size,
                                         model.weights.dtype, tp(), model.ffn_matrices);
  }

  void build_programs() {
    const ParallelPlan& plan = *setup.plan;
    const bool training = setup.kind == StepKind::kTraining;
    const Time attention = attention_time();
    const Time dense = dense_ffn_time();
    const Time gate = gate_and_shared_time();
    const Time head = lm_head_time();
    programs.assign(world, {});
    collectives.clear();
    collective_index.clear();
    for (int32_t s = 0; s < plan.pp; ++s) {
      const auto order = one_f_one_b(s, plan.pp, setup.micro_batches, training);
      const int32_t first = stage_first_layer[s];
      const int32_t last = stage_first_layer[s + 1];
      for (int32_t d = 0; d < plan.dp; ++d) {
        for (int32_t b = 0; b < plan.ep; ++b) {
          for (int32_t a = 0; a < plan.tp; ++a) {
            const int32_t gpu = plan.gpu_of(a, b, d, s);
            for (const auto& [mb, backward] : order) {
              const int scale = backward ? 2 : 1;
              if (!backward) {
                if (s > 0) add_send_recv(gpu, plan.gpu_of(a, b, d, s - 1), gpu, mb, false);
                for (int32_t l = first; l < last; ++l) {
                  add_tp_collective(gpu, CollectiveKind::kAllGather, b, d, s, mb, l, false, 0);
                  add_compute(gpu, Phase::kAttention, false, mb, l, attention);
                  add_tp_collective(gpu, CollectiveKind::kReduceScatter, b, d, s, mb, l, false, 1);
                  add_tp_collective(gpu, CollectiveKind::kAllGather, b, d, s, mb, l, false, 2);
                  if (setup.model->is_moe_layer(l)) {
                    add_compute(gpu, Phase::kDenseFfn, false, mb, l, gate);
                    add_exchange(gpu, true, Phase::kDispatch, d, s, mb, l, false);
                    // Timed when the GPU reaches it (advance): the layer may not be routed yet.
                    add_compute(gpu, Phase::kExpertCompute, false, mb, l, Time::zero());
                    add_exchange(gpu, false, Phase::kCombine, d, s, mb, l, false);
                  } else {
                    add_compute(gpu, Phase::kDenseFfn, false, mb, l, dense);
                  }
                  add_tp_collective(gpu, CollectiveKind::kReduceScatter, b, d, s, mb, l, false, 3);
                }
                if (s == plan.pp - 1) add_compute(gpu, Phase::kAttention, false, mb, -1, head);
                if (s < plan.pp - 1)
                  add_send_recv(gpu, gpu, plan.gpu_of(a, b, d, s + 1), mb, false);
              } else {
                if (s < plan.pp - 1) add_send_recv(gpu, plan.gpu_of(a, b, d, s + 1), gpu, mb, true);
                if (s == plan.pp - 1)
                  add_compute(gpu, Phase::kAttention, true, mb, -1, head * scale);
                for (int32_t l = last - 1; l >= first; --l) {
                  add_tp_collective(gpu, CollectiveKind::kAllGather, b, d, s, mb, l, true, 3);
                  if (setup.model->is_moe_layer(l)) {
                    add_exchange(gpu, true, Phase::kCombine, d, s, mb, l, true);
                    add_compute(gpu, Phase::kExpertCompute, true, mb, l, Time::zero());
                    add_exchange(gpu, false, Phase::kDispatch, d, s, mb, l, true);
                    add_compute(gpu, Phase::kDenseFfn, true, mb, l, gate * scale);
                  } else {
                    add_compute(gpu, Phase::kDenseFfn, true, mb, l, dense * scale);
                  }
                  add_tp_collective(gpu, CollectiveKind::kReduceScatter, b, d, s, mb, l, true, 2);
                  add_tp_collective(gpu, CollectiveKind::kAllGather, b, d, s, mb, l, true, 1);
                  add_compute(gpu, Phase::kAttention, true, mb, l, attention * scale);
                  add_tp_collective(gpu, CollectiveKind::kReduceScatter, b, d, s, mb, l, true, 0);
                }
                if (s > 0) add_send_recv(gpu, gpu, plan.gpu_of(a, b, d, s - 1), mb, true);
              }
            }
            if (training) add_gradient_sync_and_optimizer(gpu, a, b, s);
          }
        }
      }
    }
  }

  void add_gradient_sync_and_optimizer(int32_t gpu, int32_t a, int32_t b, int32_t s) {
    const ParallelPlan& plan = *setup.plan;
    const GpuParameterCount params =
        gpu_parameter_count(*setup.model, plan, s, stage_first_layer[s], stage_first_layer[s + 1],
                            static_cast<int64_t>(setup.placement->experts_on(b).size()));
    const int64_t dense_params = params.dense;
    const int64_t expert_params = params.routed_experts;
    // Gradients are reduced in BF16 (2 bytes per parameter).
    if (plan.ep * plan.dp > 1) {
      Collective c{};
      c.kind = CollectiveKind::kAllReduce;
      c.phase = Phase::kGradientSync;
      c.micro_batch = -1;
      for (int32_t dd = 0; dd < plan.dp; ++dd) {
        for (int32_t bb = 0; bb < plan.ep; ++bb) c.members.push_back(plan.gpu_of(a, bb, dd, s));
      }
      c.bytes = Bytes(dense_params * 2);
      add_collective(gpu, find_collective(std::make_tuple(100, a, s, 0, 0, 0), std::move(c)));
    }
    if (plan.dp > 1 && expert_params > 0) {
      Collective c{};
      c.kind = CollectiveKind::kAllReduce;
      c.phase = Phase::kGradientSync;
      c.micro_batch = -1;
      for (int32_t dd = 0; dd < plan.dp; ++dd) c.members.push_back(plan.gpu_of(a, b, dd, s));
      c.bytes = Bytes(expert_params * 2);
      add_collective(gpu, find_collective(std::make_tuple(101, a, s, b, 0, 0), std::move(c)));
    }
    // Adam with FP32 master weights and moments: read and write about 16 bytes per parameter
    // (weight, gradient, two moments) plus the BF16 copy.
    add_compute(gpu, Phase::kOptimizer, false, -1, -1,
                setup.gpu->memory_bound(Bytes((dense_params + expert_params) * 18)));
  }

  // Runs the GPU's program from its pc until it blocks or ends.
  void advance(int32_t gpu) {
    auto& program = programs[gpu];
    while (pc[gpu] < program.size()) {
      Op& op = program[pc[gpu]];
      if (op.kind == OpKind::kCompute) {
        if (op.phase == Phase::kExpertCompute) {
          const Time t = expert_time(gpu, op.micro_batch, op.layer, gpu_dp_rank(gpu));
          op.duration = op.backward ? t * 2 : t;  // the backward pass does twice the matrix work
        }
        record_compute(gpu, op);
        engine.schedule_after(op.duration, *owner, static_cast<uint64_t>(gpu));
        return;
      }
      arrival[gpu] = engine.now();
      Collective& c = collectives[op.collective];
      if (c.kind == CollectiveKind::kSendRecv) {
        // Pipeline sends are posted asynchronously (as 1F1B needs: a stage sending its next
        // activation must not wait for a peer that is itself sending a gradient back).
        if (gpu == c.members[0]) {
          post_send(op.collective);
          ++pc[gpu];
          continue;
        }
        if (c.delivered) {
          ++pc[gpu];
          continue;
        }
        c.receiver_waiting = true;
        return;
      }
      if (++c.arrived == static_cast<int32_t>(c.members.size())) launch(op.collective);
      return;
    }
    --gpus_running;
  }

  void record_compute(int32_t gpu, const Op& op) {
    m.gpu_phase_time[gpu][static_cast<int>(op.phase)] += op.duration;
    if (op.backward || op.layer < 0) return;
    const size_t slot = static_cast<size_t>(op.micro_batch) * layers() + op.layer;
    if (op.phase == Phase::kAttention)
      attention_max[slot] = std::max(attention_max[slot], op.duration);
    if (op.phase == Phase::kExpertCompute) {
      expert_max[slot] = std::max(expert_max[slot], op.duration);
      const int32_t d = gpu_dp_rank(gpu);
      for (int32_t n : (*traffic)[op.micro_batch][moe_index_of_layer[op.layer]][d]
                           .tokens_per_local_expert[gpu]) {
        m.gpu_expert_tokens[gpu] += n;
      }
    }
  }

  int32_t gpu_dp_rank(int32_t gpu) const {
    const ParallelPlan& plan = *setup.plan;
    return (gpu / (plan.tp * plan.ep)) % plan.dp;
  }

  void launch(uint32_t index) {
    Collective& c = collectives[index];
    c.launch = engine.now();
    for (int32_t g : c.members) {
      m.gpu_phase_time[g][static_cast<int>(Phase::kIdle)] += c.launch - arrival[g];
    }
    const std::vector<int>& group = c.members;
    const int n = static_cast<int>(group.size());
    switch (c.kind) {
      case CollectiveKind::kMoeDispatch:
      case CollectiveKind::kMoeCombine:
        launch_exchange(c, index);
        return;
      case CollectiveKind::kAllGather:
        network_collectives.all_gather(group, c.bytes * n, owner, index);
        return;
      case CollectiveKind::kReduceScatter:
        network_collectives.reduce_scatter(group, c.bytes * n, owner, index);
        return;
      case CollectiveKind::kAllReduce:
        network_collectives.all_reduce(group, c.bytes, CollectiveAlgo::kRing, owner, index);
        return;
      case CollectiveKind::kSendRecv:
        throw std::logic_error("StepDriver: a send/receive is posted, not launched");
    }
  }

  void post_send(uint32_t index) {
    Collective& c = collectives[index];
    c.launch = engine.now();
    ByteMatrix one(2);
    one.at(0, 1) = c.bytes.count();
    network_collectives.all_to_all(c.members, one, CollectiveAlgo::kDirect, owner, index);
  }

  // The data is in: a receiver already waiting idled until the send was posted and then waited
  // on the transfer.
  void delivered(uint32_t index) {
    Collective& c = collectives[index];
    c.finish = engine.now();
    c.delivered = true;
    report_finished();
    if (!c.receiver_waiting) return;
    const int32_t receiver = c.members[1];
    const Time waited_from = std::max(arrival[receiver], c.launch);
    m.gpu_phase_time[receiver][static_cast<int>(Phase::kIdle)] += waited_from - arrival[receiver];
    m.gpu_phase_time[receiver][static_cast<int>(Phase::kPipeline)] += c.finish - waited_from;
    ++pc[receiver];
    advance(receiver);
  }

  void launch_exchange(const Collective& c, uint32_t index) {
    ensure_slot(c.micro_batch, c.moe_layer, c.dp_rank);
    const ExchangeMatrices x = exchange_matrices(*c.traffic, c.members, network.topology(),
                                                 c.per_token, c.reverse_pattern);
    if (!x.staged) {
      network_collectives.all_to_all(c.members, x.direct, CollectiveAlgo::kDirect, owner, index);
      return;
    }
    network_collectives.two_stage(c.members, x.first, x.second, x.direct, owner, index);
  }

  void collective_done(uint32_t index, const CollectiveResult& result) {
    const Collective& c = collectives[index];
    if (c.kind == CollectiveKind::kSendRecv) {
      delivered(index);
      return;
    }
    if (c.kind == CollectiveKind::kMoeDispatch || c.kind == CollectiveKind::kMoeCombine) {
      for (const auto& sent : result.sent_bytes) {
        exchange_bytes.nvlink +=
            sent[static_cast<int>(LinkKind::kNvLink)] + sent[static_cast<int>(LinkKind::kPcie)];
        exchange_bytes.network += sent[static_cast<int>(LinkKind::kNetwork)];
      }
    }
    // Every member goes on when the collective ends (NCCL's semantics: the call returns on a
    // rank once the collective is complete there; the model's transfers end together).
    for (int32_t g : c.members) member_done(index, g);
  }

  void report_finished() {
    ++collectives_finished;
    if (progress != nullptr && *progress) {
      (*progress)(collectives_finished, static_cast<int32_t>(collectives.size()));
    }
  }

  void member_done(uint32_t index, int32_t gpu) {
    Collective& c = collectives[index];
    const Time now = engine.now();
    m.gpu_phase_time[gpu][static_cast<int>(c.phase)] += now - c.launch;
    if (++c.done == static_cast<int32_t>(c.members.size())) {
      c.finish = now;
      const bool exchange =
          c.kind == CollectiveKind::kMoeDispatch || c.kind == CollectiveKind::kMoeCombine;
      if (exchange) {
        m.exchange_time += now - c.launch;
        ++m.exchanges;
      }
      if (exchange && !c.backward) {
        (c.kind == CollectiveKind::kMoeDispatch ? m.dispatch : m.combine).push_back(now - c.launch);
      }
      report_finished();
    }
    ++pc[gpu];
    advance(gpu);
  }
};

StepDriver::StepDriver(Engine& engine, FlowNetwork& network, const StepSetup& setup)
    : impl_(std::make_unique<Impl>(engine, network, setup)) {
  Impl& s = *impl_;
  s.owner = this;
  const ParallelPlan& plan = *setup.plan;
  s.world = static_cast<int32_t>(plan.world_size());
  if (s.world != network.topology().gpu_count()) {
    throw std::invalid_argument("StepDriver: the plan has " + std::to_string(s.world) +
                                " GPUs, the topology " +
                                std::to_string(network.topology().gpu_count()));
  }
  const int32_t layers = setup.model->layers;
  if (plan.pp > layers) throw std::invalid_argument("StepDriver: more pipeline stages than layers");
  s.stage_first_layer = stage_first_layers(layers, plan.pp);
  s.moe_index_of_layer.assign(static_cast<size_t>(layers), -1);
  int32_t moe = 0;
  for (int32_t l = 0; l < layers; ++l) {
    if (setup.model->is_moe_layer(l)) s.moe_index_of_layer[l] = moe++;
  }
  s.moe_layers = moe;
}

StepDriver::~StepDriver() = default;

StepMeasurement StepDriver::run_step(const StepTraffic& traffic, const AwaitTrafficSlot& await_slot,
                                     const StepProgress& progress) {
  Impl& s = *impl_;
  s.traffic = &traffic;
  s.await_slot = &await_slot;
  s.progress = &progress;
  s.collectives_finished = 0;
  s.slot_ready.assign(static_cast<size_t>(s.setup.micro_batches) * s.moe_layers * s.setup.plan->dp,
                      0);
  s.m = StepMeasurement{};
  s.m.gpu_phase_time.assign(static_cast<size_t>(s.world), {});
  s.m.gpu_expert_tokens.assign(static_cast<size_t>(s.world), 0);
  const size_t slots = static_cast<size_t>(s.setup.micro_batches) * s.layers();
  s.attention_max.assign(slots, Time::zero());
  s.expert_max.assign(slots, Time::zero());
  const ExchangeBytes bytes_before = s.exchange_bytes;
  s.build_programs();
  s.pc.assign(static_cast<size_t>(s.world), 0);
  s.arrival.assign(static_cast<size_t>(s.world), Time::zero());
  s.gpus_running = s.world;
  const Time start = s.engine.now();
  for (int32_t g = 0; g < s.world; ++g) s.advance(g);
  s.engine.run();
  if (s.gpus_running != 0) {
    throw std::logic_error("StepDriver: the step deadlocked with " +
                           std::to_string(s.gpus_running) + " GPUs blocked");
  }
  s.m.step_time = s.engine.now() - start;
  for (size_t i = 0; i < slots; ++i) {
    if (s.attention_max[i] > Time::zero()) s.m.attention.push_back(s.attention_max[i]);
    if (s.expert_max[i] > Time::zero()) s.m.expert_compute.push_back(s.expert_max[i]);
  }
  s.m.exchange_bytes.nvlink = s.exchange_bytes.nvlink - bytes_before.nvlink;
  s.m.exchange_bytes.network = s.exchange_bytes.network - bytes_before.network;
  s.traffic = nullptr;
  s.await_slot = nullptr;
  s.progress = nullptr;
  return std::move(s.m);
}

void StepDriver::on_event(uint64_t tag) {
  const auto gpu = static_cast<int32_t>(tag);
  ++impl_->pc[gpu];
  impl_->advance(gpu);
}

void StepDriver::on_collective_done(CollectiveId, uint64_t tag, const CollectiveResult& result) {
  impl_->collective_done(static_cast<uint32_t>(tag), result);
}

}  // namespace moesim
