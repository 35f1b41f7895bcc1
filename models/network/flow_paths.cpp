#include "models/network/flow_paths.h"

#include <stdexcept>
#include <string>

namespace moesim {

std::vector<uint8_t> constraining_links(const Topology& topology,
                                        std::span<const double> capacity) {
  const auto links = topology.links();
  const size_t vertices = topology.vertex_count();
  std::vector<uint32_t> out_count(vertices, 0), in_count(vertices, 0);
  std::vector<uint32_t> some_out(vertices, 0), some_in(vertices, 0);
  for (uint32_t i = 0; i < links.size(); ++i) {
    const size_t from = links[i].from.value, to = links[i].to.value;
    ++out_count[from];
    ++in_count[to];
    // Any one other than a given link's reverse: with two links, the one that is not it.
    some_out[from] ^= i;
    some_in[to] ^= i;
  }
  auto tighter = [&](uint32_t m, uint32_t l) {
    return capacity[m] < capacity[l] || (capacity[m] == capacity[l] && m < l);
  };
  std::vector<uint8_t> constraining(links.size(), 1);
  for (uint32_t l = 0; l < links.size(); ++l) {
    const uint32_t back = topology.reverse(LinkId{l}).value;
    const VertexId head = links[l].to, tail = links[l].from;
    const bool head_relays = topology.gpu_index(head) < 0;
    const bool tail_relays = topology.gpu_index(tail) < 0;
    const bool back_exists = back < links.size() && links[back].from.value == head.value &&
                             links[back].to.value == tail.value;
    if (!back_exists) continue;
    // The one link onward from the head other than the way back: some_out xor back.
    if (head_relays && out_count[head.value] == 2) {
      const uint32_t next = some_out[head.value] ^ back;
      if (tighter(next, l)) constraining[l] = 0;
    }
    if (tail_relays && in_count[tail.value] == 2) {
      const uint32_t previous = some_in[tail.value] ^ back;
      if (tighter(previous, l)) constraining[l] = 0;
    }
  }
  return constraining;
}

void check_flow_request(std::string_view network, const Topology& topology, int src_gpu,
                        int dst_gpu, Bytes bytes) {
  const int gpus = topology.gpu_count();
  const bool outside = src_gpu < 0 || src_gpu >= gpus || dst_gpu < 0 || dst_gpu >= gpus;
  if (!outside && bytes.count() >= 0) return;  // the hot path builds no message
  const std::string flow =
      std::string(network) + ": flow " + std::to_string(src_gpu) + " -> " + std::to_string(dst_gpu);
  if (outside) {
    throw std::out_of_range(flow + " names a GPU outside [0, " + std::to_string(gpus) + ")");
  }
  throw std::invalid_argument(flow + " has a negative size");
}

FlowRoute route_flow(std::string_view network, const Topology& topology,
                     std::span<const uint8_t> constraining, int src_gpu, int dst_gpu,
                     uint64_t flow_hash, bool drains, std::vector<uint32_t>& links) {
  const std::span<const LinkId> path =
      src_gpu == dst_gpu ? std::span<const LinkId>() : topology.path(src_gpu, dst_gpu, flow_hash);
  links.clear();
  FlowRoute route;
  route.empty = path.empty();
  for (const LinkId l : path) {
    if (constraining[l.value] != 0) links.push_back(l.value);
    const LinkKind k = topology.link(l).kind;
    if (k == LinkKind::kNetwork || (k == LinkKind::kPcie && route.kind == LinkKind::kNvLink)) {
      route.kind = k;
    }
  }
  route.latency = topology.path_latency(path);
  if (links.size() > kMaxConstrainingLinks) {
    throw std::invalid_argument(std::string(network) + ": the path " + std::to_string(src_gpu) +
                                " -> " + std::to_string(dst_gpu) + " has " +
                                std::to_string(links.size()) +
                                " links that can constrain it; at most " +
                                std::to_string(kMaxConstrainingLinks) + " are supported");
  }
  if (drains && !route.empty && links.empty()) {
    throw std::logic_error(std::string(network) + ": no link of the path " +
                           std::to_string(src_gpu) + " -> " + std::to_string(dst_gpu) +
                           " constrains it");
  }
  return route;
}

}  // namespace moesim
