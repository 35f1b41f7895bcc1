#include "models/network/fast_network.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "models/network/flow_paths.h"

namespace moesim {

FastNetwork::FastNetwork(Engine& engine, const Topology& topology, NetworkOptions options)
    : engine_(engine), topology_(topology), options_(options) {
  const size_t links = topology.links().size();
  capacity_.resize(links);
  for (size_t i = 0; i < links; ++i) {
    capacity_[i] = topology.effective_capacity(LinkId{static_cast<uint32_t>(i)}).bytes_per_second();
  }
  constraining_ = constraining_links(topology_, capacity_);
  classes_.resize(links);
  idle_ = capacity_;
  comp_of_.assign(links, kNone);
  link_count_.assign(links, 0);
  link_start_.resize(links);
  link_cursor_.resize(links);
  residual_.resize(links);
  uf_parent_.resize(links);
  due_.resize_ids(links);
  traffic_.resize(static_cast<size_t>(topology.gpu_count()));
}

uint32_t FastNetwork::allocate_flow() {
  if (free_flow_head_ != kNone) {
    const uint32_t f = free_flow_head_;
    free_flow_head_ = flows_[f].tag;
    return f;
  }
  const auto f = static_cast<uint32_t>(flows_.size());
  if (f >= LatencyWires::kMaxFlows) {
    throw std::length_error("fast network: more than 2^31 flows at once");
  }
  flows_.emplace_back();
  pieces_.resize_flows(flows_.size());
  return f;
}

FlowId FastNetwork::start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                               uint32_t tag) {
  return start(src_gpu, dst_gpu, bytes, observer, tag, ecmp_hash(flow_counter_), 1);
}

FlowId FastNetwork::start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                               uint32_t tag, uint64_t flow_hash) {
  return start(src_gpu, dst_gpu, bytes, observer, tag, flow_hash, 1);
}

FlowId FastNetwork::start_flow_in_pieces(int src_gpu, int dst_gpu, Bytes bytes, uint32_t pieces,
                                         FlowObserver* observer, uint32_t tag) {
  if (pieces < 1 || pieces > FlowPieces::kMaxPieces) {
    throw std::invalid_argument("fast network: a flow takes 1 to 65535 pieces, not " +
                                std::to_string(pieces));
  }
  return start(src_gpu, dst_gpu, bytes, observer, tag, ecmp_hash(flow_counter_), pieces);
}

FlowId FastNetwork::start(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                          uint32_t tag, uint64_t flow_hash, uint32_t pieces) {
  check_flow_request("fast network", topology_, src_gpu, dst_gpu, bytes);
  ++flow_counter_;
  const bool routed_later = bytes.count() > 0 && src_gpu != dst_gpu;
  FlowRoute route;
  if (!routed_later) {
    route = route_flow("fast network", topology_, constraining_, src_gpu, dst_gpu, flow_hash, false,
                       scratch_path_);
  }
  const uint32_t f = allocate_flow();
  pieces_.start(f, pieces, flows_.size());
  Flow& flow = flows_[f];
  flow = Flow{};
  flow.src = src_gpu;
  flow.dst = dst_gpu;
  flow.bytes = bytes.count();
  flow.observer = observer;
  flow.tag = tag;
  ++stats_.flows_started;
  if (routed_later) {
    // Its route is found with the instant's other starts, destination by destination
    // (route_starts); until then left_ps holds its ECMP hash.
    flow.left_ps = static_cast<int64_t>(flow_hash);
    flow.after_boundary = flow.bytes;
    flow.key = next_piece_bytes(f);  // until it joins a class: bytes to its first boundary
    unrouted_.push_back(f);
    if (!starts_pending_) {
      starts_pending_ = true;
      engine_.schedule_at(engine_.now(), *this, make_tag(EventKind::kStarts, 0));
    }
    return FlowId{f};
  }
  set_wire(f, route);
  traffic_[static_cast<size_t>(src_gpu)].sent_bytes[static_cast<size_t>(route.kind)] +=
      bytes.count();
  send_on_wire(f, engine_.now().count_ps());
  return FlowId{f};
}

void FastNetwork::set_wire(uint32_t f, const FlowRoute& route) {
  const uint32_t wire = wires_.wire_for(route.latency.count_ps());
  if (wire > std::numeric_limits<uint16_t>::max()) {
    throw std::length_error("fast network: more than 65536 distinct path latencies");
  }
  if (wire == wire_timers_.size()) wire_timers_.emplace_back();
  flows_[f].wire = static_cast<uint16_t>(wire);
  flows_[f].kind = route.kind;
}

// The routes of the flows started at this instant, looked up destination by destination: the
// topology's path table for one destination stays in cache across its sources (an all-to-all
// starts its flows source by source, and at a million flows looking them up in that order
// missed the cache at every hop). Each flow's path block is appended to the pool.
void FastNetwork::route_starts() {
  if (unrouted_.empty()) return;
  const auto gpus = static_cast<size_t>(topology_.gpu_count());
  if (unrouted_.size() >= gpus) {
    // Counting sort by destination (stable: start order within a destination).
    route_order_.resize(unrouted_.size());
    dst_cursor_.assign(gpus + 1, 0);
    for (const uint32_t f : unrouted_) ++dst_cursor_[static_cast<size_t>(flows_[f].dst) + 1];
    for (size_t g = 0; g < gpus; ++g) dst_cursor_[g + 1] += dst_cursor_[g];
    for (const uint32_t f : unrouted_) {
      route_order_[dst_cursor_[static_cast<size_t>(flows_[f].dst)]++] = f;
    }
    unrouted_.swap(route_order_);
  } else {
    std::stable_sort(unrouted_.begin(), unrouted_.end(),
                     [this](uint32_t a, uint32_t b) { return flows_[a].dst < flows_[b].dst; });
  }
  for (const uint32_t f : unrouted_) {
    Flow& flow = flows_[f];
    const FlowRoute route = route_flow("fast network", topology_, constraining_, flow.src, flow.dst,
                                       static_cast<uint64_t>(flow.left_ps), true, scratch_path_);
    set_wire(f, route);
    flow.left_ps = 0;
    // A block appended to the pool: the hop count, then the links (a fill copies the blocks of
    // the flows it fills to the pool's end, and compact_paths drops the blocks left behind).
    const auto hops = static_cast<uint32_t>(scratch_path_.size());
    max_hops_ = std::max(max_hops_, hops);
    const size_t off = path_pool_.size();
    if (off + hops + 1 > std::numeric_limits<uint32_t>::max()) {
      throw std::length_error("fast network: more than 2^32 path entries at once");
    }
    path_pool_.push_back(hops);
    path_pool_.insert(path_pool_.end(), scratch_path_.begin(), scratch_path_.end());
    flow.path = static_cast<uint32_t>(off);
    live_words_ += hops + 1;
    starting_.push_back(f);
  }
  unrouted_.clear();
}

// Bytes from the piece boundary the flow has reached to its next one (its last byte when it has
// no more pieces to leave); moves the flow's boundary on.
double FastNetwork::next_piece_bytes(uint32_t f) {
  Flow& flow = flows_[f];
  const int64_t after =
      pieces_.more_to_leave(f) ? pieces_.bytes_after_leaving_piece(f, flow.bytes) : 0;
  const int64_t piece = flow.after_boundary - after;
  flow.after_boundary = after;
  return static_cast<double>(piece);
}

void FastNetwork::on_event(uint64_t tag) {
  const auto kind = static_cast<EventKind>(tag >> kKindShift);
  const auto index = static_cast<uint32_t>(tag & ((uint64_t{1} << kKindShift) - 1));
  switch (kind) {
    case EventKind::kDrain:
      drain_due();
      break;
    case EventKind::kDeliver:
      deliver_due(index);
      break;
    case EventKind::kStarts:
      take_starts();
      break;
  }
}

bool FastNetwork::fill_due() const {
  return static_cast<double>(changes_since_fill_) >=
         kRefillFraction * static_cast<double>(active_at_fill_);
}

void FastNetwork::take_starts() {
  starts_pending_ = false;
  route_starts();
  if (starting_.empty()) return;
  changes_since_fill_ += starting_.size();
  if (fill_due()) {
    fill();
    return;
  }
  const int64_t now_ps = engine_.now().count_ps();
  for (size_t i = 0; i < starting_.size(); ++i) {
    if (!insert(starting_[i], now_ps)) {
      starting_.erase(starting_.begin(), starting_.begin() + static_cast<long>(i));
      fill();
      return;
    }
  }
  starting_.clear();
  arm_drain_timer();
}

// Progressive filling over every flow on links: the links in order of their fair share, each
// freezing its flows not yet frozen at that share. A link's share only rises as flows freeze
// elsewhere, so a stale heap entry is a lower bound and is re-pushed when it surfaces.
void FastNetwork::fill() {
  route_starts();  // a drain at the instant of starts not yet taken fills them in too
  const int64_t now_ps = engine_.now().count_ps();
  ++stats_.recomputations;
  // The fill reads compact copies, by fill position: each flow's id, path block, bytes to its
  // next boundary and links. They are gathered class by class, so the flows that freeze
  // together again (most do) sit together and the freezing pass reads them in order rather than
  // gathering from a million flows' records; classes are emptied.
  // Only the components with a start or finish since the last fill are filled again: no flow
  // of another crosses their links, so the max-min rates there do not depend on them, and the
  // others' classes still hold the rates of the last fill. A flow starting now couples the
  // components its path crosses. (The order flows are gathered in does not change the rates:
  // a link's flows freeze together, each taking the same level off its links.)
  for (const uint32_t f : starting_) {
    const uint32_t* p = links_at(flows_[f].path);
    for (uint32_t k = 0; k < hops_at(flows_[f].path); ++k) mark_dirty(comp_of_[p[k]]);
  }
  // The list may hold an id twice (freed by a merge, then reused) or a freed one: kept once.
  size_t unique = 0;
  for (const uint32_t id : dirty_comps_) {
    if (comp_dirty_[id] != 1) continue;
    comp_dirty_[id] = 2;
    dirty_comps_[unique++] = id;
  }
  dirty_comps_.resize(unique);
  size_t n = starting_.size();
  for (const uint32_t id : dirty_comps_) {
    for (const uint32_t l : comp_links_[id]) n += classes_[l].members.size();
  }
  fill_key_.resize(n);
  fill_flow_.resize(n);
  fill_block_.resize(n);
  // The filled flows' path blocks are copied in fill order, so that the fill and the next one
  // read them in order: into a new pool when the fill takes every flow routed (the old one is
  // then all blocks left behind), else to the end of the pool, which is compacted once three
  // quarters of it is blocks left behind (below). The pool grows once by as much as the copies can
  // take (no path is longer than max_hops_) and is cut back after them: a resize and copy per
  // block, value-initialising each, was ~7% of a large all-to-all's instructions.
  size_t i = 0;
  const bool every_flow = n == active_count_ + starting_.size();
  std::vector<uint32_t>& to_pool = every_flow ? fill_pool_ : path_pool_;
  const auto filled_from = static_cast<uint32_t>(every_flow ? 0 : path_pool_.size());
  const size_t most = filled_from + n * (size_t{max_hops_} + 1);
  if (most > std::numeric_limits<uint32_t>::max()) {
    throw std::length_error("fast network: path pool over 2^32 entries");
  }
  to_pool.resize(most);
  const uint32_t* copy_from = path_pool_.data();
  uint32_t* copy_to = to_pool.data();
  uint32_t copied = filled_from;
  // Every per-link array below is touched only on the links the gathered flows cross (touched_,
  // in the order the copies first name them), so that a fill's cost is its flows' and their
  // links', not the fabric's: link_count_ is zero on every link between fills (a fill freezes
  // every flow, taking each count back to zero).
  touched_.clear();
  uint32_t* link_count = link_count_.data();
  const auto gather = [&](uint32_t flow, uint32_t block, double key) {
    fill_key_[i] = key;
    fill_flow_[i] = flow;
    fill_block_[i] = copied;
    const uint32_t words = copy_from[block] + 1;
    copy_to[copied] = copy_from[block];
    for (uint32_t w = 1; w < words; ++w) {
      const uint32_t l = copy_from[block + w];
      copy_to[copied + w] = l;
      if (link_count[l]++ == 0) touched_.push_back(l);
    }
    copied += words;
    ++i;
  };
  for (const uint32_t id : dirty_comps_) {
    for (const uint32_t l : comp_links_[id]) {
      Class& c = classes_[l];
      if (c.members.empty()) continue;
      advance(l, now_ps);
      for (const Member& m : c.members) gather(m.flow, m.path, std::max(m.key - c.virt, 0.0));
      c.members.clear();  // keeps its capacity for the fill
      c.share = c.level = c.virt = 0.0;
      due_.remove(l);
    }
  }
  for (const uint32_t f : starting_) gather(f, flows_[f].path, flows_[f].key);
  to_pool.resize(copied);
  if (every_flow) path_pool_.swap(fill_pool_);
  active_count_ += starting_.size();
  starting_.clear();
  stats_.region_flows += n;
  stats_.active_flows += active_count_;
  // The filled components' links go back to no component, wholly idle; the fill below labels
  // the links its flows cross again.
  for (const uint32_t id : dirty_comps_) {
    comp_dirty_[id] = 0;
    for (const uint32_t l : comp_links_[id]) {
      comp_of_[l] = kNone;
      idle_[l] = capacity_[l];
    }
    comp_links_[id].clear();
    free_comps_.push_back(id);
  }
  dirty_comps_.clear();

  uint32_t sum = 0;
  for (const uint32_t l : touched_) {
    link_start_[l] = sum;
    link_cursor_[l] = sum;
    sum += link_count[l];
    residual_[l] = capacity_[l];
    uf_parent_[l] = l;
  }
  link_flows_.resize(sum);
  for (uint32_t j = 0; j < n; ++j) {
    const uint32_t b = fill_block_[j];
    for (uint32_t k = b + 1; k <= b + path_pool_[b]; ++k) {
      link_flows_[link_cursor_[path_pool_[k]]++] = j;
    }
  }
  // Now link_cursor_[l] is the end of link l's flows in link_flows_.
  fill_frozen_.assign((n + 63) / 64, 0);
  // Links are taken in (share, link) order from two sources: every link by its share at the
  // start, sorted once, and a heap of the links whose share had risen when they came up. The
  // entries are distinct (a link has one at a time), so the order they freeze in does not
  // depend on the order they are pushed in. (One heap of every link took ~8x the sort's
  // instructions, callgrind on the error suite's 64-GPU cases: most links come up once, many with
  // no flow left, and a pop is log L where the sorted list's next entry is one read.)
  level_order_.clear();
  level_heap_.clear();
  for (const uint32_t l : touched_) level_order_.emplace_back(capacity_[l] / link_count[l], l);
  std::sort(level_order_.begin(), level_order_.end());
  const auto after = [](const std::pair<double, uint32_t>& a,
                        const std::pair<double, uint32_t>& b) { return a > b; };
  size_t next_in_order = 0;
  // Locals: the stores below may alias any vector's members, which would reload them.
  const uint32_t* link_flows = link_flows_.data();
  const uint32_t* fill_block = fill_block_.data();
  const uint32_t* pool = path_pool_.data();
  uint64_t* frozen = fill_frozen_.data();
  double* residual = residual_.data();
  while (next_in_order < level_order_.size() || !level_heap_.empty()) {
    std::pair<double, uint32_t> top;
    if (level_heap_.empty() ||
        (next_in_order < level_order_.size() && level_order_[next_in_order] < level_heap_[0])) {
      top = level_order_[next_in_order++];
    } else {
      std::pop_heap(level_heap_.begin(), level_heap_.end(), after);
      top = level_heap_.back();
      level_heap_.pop_back();
    }
    const auto [key, l] = top;
    const uint32_t unfrozen = link_count[l];
    if (unfrozen == 0) continue;
    const double share = std::max(residual[l], 0.0) / unfrozen;
    if (share > key * (1.0 + 1e-12)) {
      level_heap_.emplace_back(share, l);
      std::push_heap(level_heap_.begin(), level_heap_.end(), after);
      continue;
    }
    // The link freezes: its unfrozen flows form its class at this share, and each joins its
    // links to this one's component (the links the filled flows cross form components anew).
    const double level = std::max(share, capacity_[l] * 1e-9);
    Class& c = classes_[l];
    c.members.reserve(unfrozen);
    const uint32_t root = uf_find(l);
    for (uint32_t j = link_start_[l]; j < link_cursor_[l]; ++j) {
      const uint32_t e = link_flows[j];
      const uint64_t bit = uint64_t{1} << (e & 63);
      if ((frozen[e >> 6] & bit) != 0) continue;
      frozen[e >> 6] |= bit;
      c.members.push_back(Member{fill_key_[e], fill_flow_[e], fill_block_[e]});
      const uint32_t b = fill_block[e];
      for (uint32_t k = b + 1; k <= b + pool[b]; ++k) {
        const uint32_t m = pool[k];
        residual[m] -= level;
        --link_count[m];
        const uint32_t r = uf_find(m);
        if (r != root) uf_parent_[r] = root;
      }
    }
    c.level = level;
    c.share = level * static_cast<double>(c.members.size());
    c.virt = 0.0;
    c.clock_ps = now_ps;
    std::make_heap(c.members.begin(), c.members.end(), MemberAfter{});
    rekey(l);
  }
  // What no class holds is idle: what flows frozen elsewhere leave of a link that never froze
  // (a frozen link's residual is ~0).
  for (const uint32_t l : touched_) {
    idle_[l] = classes_[l].members.empty() ? std::max(residual_[l], 0.0) : 0.0;
  }
  for (const uint32_t l : touched_) {
    const uint32_t r = uf_find(l);
    if (comp_of_[r] == kNone) comp_of_[r] = new_component();
    comp_of_[l] = comp_of_[r];
  }
  for (const uint32_t l : touched_) comp_links_[comp_of_[l]].push_back(l);
  compact_paths();
  stats_.rate_changes += n;
  changes_since_fill_ = 0;
  active_at_fill_ = active_count_;
  arm_drain_timer();
}

// A start between fills: the flow joins the class of its link that would give it the least
// (that link's class share and unused capacity over its members and it), and its rate is taken
// from what its other links leave unused, else from their classes. False when no link of its
// path has anything to give (every one is held entirely by flows bottlenecked elsewhere): only
// a fill can say then what it gets.
bool FastNetwork::insert(uint32_t f, int64_t now_ps) {
  Flow& flow = flows_[f];
  const uint32_t* p = links_at(flow.path);
  const uint32_t hops = hops_at(flow.path);
  uint32_t best = kNone;
  double best_level = std::numeric_limits<double>::infinity();
  for (uint32_t k = 0; k < hops; ++k) {
    const uint32_t m = p[k];
    const Class& c = classes_[m];
    const double level =
        (c.share + std::max(idle_[m], 0.0)) / static_cast<double>(c.members.size() + 1);
    if (level < best_level) {
      best_level = level;
      best = m;
    }
  }
  if (!(best_level > capacity_[best] * 1e-6)) return false;
  Class& c = classes_[best];
  join_component(p, hops);
  advance(best, now_ps);
  c.share += std::max(idle_[best], 0.0);
  idle_[best] = std::min(idle_[best], 0.0);
  c.members.push_back(Member{c.virt + flow.key, f, flow.path});
  std::push_heap(c.members.begin(), c.members.end(), MemberAfter{});
  c.level = c.share / static_cast<double>(c.members.size());
  ++stats_.rate_changes;
  rekey(best);
  ++active_count_;
  const double rate = c.level;
  for (uint32_t k = 0; k < hops; ++k) {
    const uint32_t m = p[k];
    if (m == best) continue;
    idle_[m] -= rate;
    Class& other = classes_[m];
    if (idle_[m] < 0.0 && !other.members.empty()) {
      // The class of that link gives up what the link lacks, keeping at least a tenth.
      const double share = std::max(other.share + idle_[m], 0.1 * other.share);
      idle_[m] += other.share - share;
      set_share(m, share, now_ps);
    }
  }
  return true;
}

// Once three quarters of the pool are blocks left behind (finished flows', and the filled
// flows' old copies), the blocks of the flows in classes are copied to a new pool, class by
// class. Its cost, the fabric's links and the live blocks, is paid once per three times as many
// words appended (at half, the compactions were 3.4% of the DualPipe example's CPU).
void FastNetwork::compact_paths() {
  if (path_pool_.size() <= 4 * live_words_ + classes_.size()) return;
  fill_pool_.resize(live_words_);
  const uint32_t* from = path_pool_.data();
  uint32_t* to = fill_pool_.data();
  uint32_t copied = 0;
  for (Class& c : classes_) {
    for (Member& m : c.members) {
      const uint32_t words = from[m.path] + 1;
      if (copied + words > live_words_) {
        throw std::logic_error("fast network: classes hold more path words than are live");
      }
      for (uint32_t w = 0; w < words; ++w) to[copied + w] = from[m.path + w];
      m.path = copied;
      copied += words;
    }
  }
  fill_pool_.resize(copied);
  path_pool_.swap(fill_pool_);
}

uint32_t FastNetwork::uf_find(uint32_t l) {
  while (uf_parent_[l] != l) {
    uf_parent_[l] = uf_parent_[uf_parent_[l]];
    l = uf_parent_[l];
  }
  return l;
}

uint32_t FastNetwork::new_component() {
  if (!free_comps_.empty()) {
    const uint32_t id = free_comps_.back();
    free_comps_.pop_back();
    return id;
  }
  comp_links_.emplace_back();
  comp_dirty_.push_back(0);
  return static_cast<uint32_t>(comp_links_.size() - 1);
}

void FastNetwork::mark_dirty(uint32_t id) {
  if (id == kNone || comp_dirty_[id] != 0) return;
  comp_dirty_[id] = 1;
  dirty_comps_.push_back(id);
}

// A flow inserted between fills couples the components its path crosses: they become one, the
// largest taking the others' links, and it is dirty.
void FastNetwork::join_component(const uint32_t* p, uint32_t hops) {
  uint32_t target = kNone;
  for (uint32_t k = 0; k < hops; ++k) {
    const uint32_t id = comp_of_[p[k]];
    if (id != kNone && (target == kNone || comp_links_[id].size() > comp_links_[target].size())) {
      target = id;
    }
  }
  if (target == kNone) target = new_component();
  mark_dirty(target);
  for (uint32_t k = 0; k < hops; ++k) {
    const uint32_t id = comp_of_[p[k]];
    if (id == target) continue;
    if (id == kNone) {
      comp_of_[p[k]] = target;
      comp_links_[target].push_back(p[k]);
      continue;
    }
    for (const uint32_t l : comp_links_[id]) comp_of_[l] = target;
    comp_links_[target].insert(comp_links_[target].end(), comp_links_[id].begin(),
                               comp_links_[id].end());
    comp_links_[id].clear();
    comp_dirty_[id] = 0;
    free_comps_.push_back(id);
  }
}

void FastNetwork::advance(uint32_t l, int64_t now_ps) {
  Class& c = classes_[l];
  c.virt += c.level * static_cast<double>(now_ps - c.clock_ps) * 1e-12;
  c.clock_ps = now_ps;
}

void FastNetwork::set_share(uint32_t l, double share, int64_t now_ps) {
  Class& c = classes_[l];
  advance(l, now_ps);
  c.share = share;
  c.level = share / static_cast<double>(c.members.size());
  ++stats_.rate_changes;
  rekey(l);
}

void FastNetwork::absorb_idle(uint32_t l, int64_t now_ps) {
  Class& c = classes_[l];
  if (c.members.empty() || !(idle_[l] > 0.0)) return;
  const double share = c.share + idle_[l];
  idle_[l] = 0.0;
  set_share(l, share, now_ps);
}

// The class's next boundary, in engine time, rounded up to a whole picosecond.
void FastNetwork::rekey(uint32_t l) {
  const Class& c = classes_[l];
  if (c.members.empty()) {
    due_.remove(l);
    return;
  }
  const double bytes = c.members.front().key - c.virt;
  int64_t at_ps = c.clock_ps;
  if (bytes > 0.0) {
    const double exact = bytes / c.level * 1e12;
    const double limit = static_cast<double>(Time::max().count_ps() - c.clock_ps);
    auto dt = static_cast<int64_t>(std::min(exact, limit));
    if (static_cast<double>(dt) < exact && exact < limit) ++dt;
    at_ps += dt;
  }
  due_.set(Due{at_ps, l});
}

void FastNetwork::arm_drain_timer() {
  const int64_t head_ps = due_.empty() ? -1 : due_.top().at_ps;
  if (head_ps == drain_timer_ps_) return;
  if (drain_timer_ != EventId{}) engine_.cancel(drain_timer_);
  drain_timer_ = EventId{};
  drain_timer_ps_ = head_ps;
  if (head_ps >= 0) {
    drain_timer_ = engine_.schedule_at(Time::ps(head_ps), *this, make_tag(EventKind::kDrain, 0));
  }
}

// Every class whose head reaches a boundary now: pieces go on in the class, last bytes leave.
void FastNetwork::drain_due() {
  drain_timer_ = EventId{};
  drain_timer_ps_ = -1;
  const int64_t now_ps = engine_.now().count_ps();
  while (!due_.empty() && due_.top().at_ps <= now_ps) {
    const uint32_t l = due_.top().link;
    Class& c = classes_[l];
    advance(l, now_ps);
    // Within a picosecond's drain of the boundary counts as there (keys are rounded up to one).
    const double reached = c.virt + 1.5e-12 * c.level;
    const double rate = c.level;
    done_.clear();  // (flow, path block) of the members that finished
    while (!c.members.empty() && c.members.front().key <= reached) {
      std::pop_heap(c.members.begin(), c.members.end(), MemberAfter{});
      const Member m = c.members.back();
      c.members.pop_back();
      if (pieces_.more_to_leave(m.flow)) {
        leave_piece(m.flow, now_ps);
        c.members.push_back(Member{m.key + next_piece_bytes(m.flow), m.flow, m.path});
        std::push_heap(c.members.begin(), c.members.end(), MemberAfter{});
      } else {
        done_.emplace_back(m.flow, m.path);
      }
    }
    // The class keeps its share: the members left take what the finished ones held.
    if (c.members.empty()) {
      idle_[l] += c.share;
      c.share = 0.0;
      c.level = 0.0;
      due_.remove(l);
    } else {
      if (!done_.empty()) {
        c.level = c.share / static_cast<double>(c.members.size());
        ++stats_.rate_changes;
      }
      rekey(l);
    }
    for (const auto& [f, block] : done_) finish(f, block, l, rate, now_ps);
  }
  if (active_count_ > 0 && changes_since_fill_ > 0 && fill_due()) {
    fill();
  } else {
    arm_drain_timer();
  }
}

// A flow's last byte left: the rate it held on its other links goes to their classes.
void FastNetwork::finish(uint32_t f, uint32_t block, uint32_t cls, double rate, int64_t now_ps) {
  Flow& flow = flows_[f];
  const uint32_t* p = links_at(block);
  const uint32_t hops = hops_at(block);
  mark_dirty(comp_of_[cls]);
  for (uint32_t k = 0; k < hops; ++k) {
    const uint32_t m = p[k];
    if (m == cls) continue;
    idle_[m] += rate;
    absorb_idle(m, now_ps);
  }
  --active_count_;
  ++changes_since_fill_;
  live_words_ -= hops + 1;
  while (pieces_.more_to_leave(f)) leave_piece(f, now_ps);
  traffic_[static_cast<size_t>(flow.src)].sent_bytes[static_cast<size_t>(flow.kind)] += flow.bytes;
  send_on_wire(f, now_ps);
}

void FastNetwork::send_on_wire(uint32_t f, int64_t now_ps) {
  flows_[f].left_ps = now_ps;
  if (wires_.push_flow(flows_[f].wire, f)) arm_wire(flows_[f].wire);
}

void FastNetwork::leave_piece(uint32_t f, int64_t now_ps) {
  pieces_.note_left(f);
  if (wires_.push_piece(flows_[f].wire, f, now_ps)) arm_wire(flows_[f].wire);
}

void FastNetwork::arm_wire(uint32_t w) {
  const int64_t at_ps =
      wires_.head_arrival_ps(w, [this](uint32_t flow) { return flows_[flow].left_ps; });
  if (at_ps < 0) return;
  WireTimer& timer = wire_timers_[w];
  if (timer.at_ps == at_ps) return;
  if (timer.event != EventId{}) engine_.cancel(timer.event);
  timer.at_ps = at_ps;
  timer.event = engine_.schedule_at(Time::ps(at_ps), *this, make_tag(EventKind::kDeliver, w));
}

void FastNetwork::deliver_due(uint32_t w) {
  wire_timers_[w] = WireTimer{};
  const int64_t now_ps = engine_.now().count_ps();
  const auto left_ps = [this](uint32_t flow) { return flows_[flow].left_ps; };
  LatencyWires::Arrival arrival;
  while (wires_.pop_arrived(w, now_ps, left_ps, arrival)) {
    if (arrival.piece) {
      deliver_piece(arrival.flow);
    } else {
      deliver(arrival.flow);
    }
  }
  arm_wire(w);
}

void FastNetwork::deliver_piece(uint32_t f) {
  const uint16_t index = pieces_.note_arrived(f);
  if (flows_[f].observer != nullptr)
    flows_[f].observer->on_flow_piece(FlowId{f}, flows_[f].tag, index);
}

void FastNetwork::deliver(uint32_t f) {
  Flow& flow = flows_[f];
  traffic_[static_cast<size_t>(flow.dst)].received_bytes[static_cast<size_t>(flow.kind)] +=
      flow.bytes;
  ++stats_.flows_delivered;
  while (pieces_.more_to_arrive(f)) deliver_piece(f);
  if (flows_[f].observer != nullptr) flows_[f].observer->on_flow_done(FlowId{f}, flows_[f].tag);
  flows_[f].tag = free_flow_head_;
  free_flow_head_ = f;
}

}  // namespace moesim
