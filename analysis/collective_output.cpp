#include "analysis/collective_output.h"

#include <iomanip>

namespace moesim {

void write_collective_json(std::ostream& out, std::span<const CollectiveSizeRow> rows) {
  out << "[\n";
  bool first = true;
  for (const CollectiveSizeRow& r : rows) {
    out << (first ? "" : ",\n") << std::setprecision(10) << "  {\"size\": " << r.size_bytes
        << ", \"count\": " << r.size_bytes / 4 << ", \"time_us\": " << r.time_us
        << ", \"algbw_gbps\": " << r.algbw_gbps << ", \"busbw_gbps\": " << r.busbw_gbps
        << ", \"flows\": " << r.flows << ", \"network_model\": \"" << r.network_tier << "\"}";
    first = false;
  }
  out << "\n]\n";
}

void print_collective_table(std::ostream& out, std::string_view op, std::string_view algo, int gpus,
                            std::string_view topology, std::string_view network,
                            std::span<const CollectiveSizeRow> rows) {
  out << "# " << op << " (" << algo << ") on " << gpus << " GPUs of " << topology << ", " << network
      << " network\n"
      << std::setw(14) << "size(B)" << std::setw(14) << "count" << std::setw(14) << "time(us)"
      << std::setw(14) << "algbw(GB/s)" << std::setw(14) << "busbw(GB/s)"
      << "\n";
  for (const CollectiveSizeRow& r : rows) {
    out << std::fixed << std::setw(14) << r.size_bytes << std::setw(14) << r.size_bytes / 4
        << std::setprecision(2) << std::setw(14) << r.time_us << std::setw(14) << r.algbw_gbps
        << std::setw(14) << r.busbw_gbps << "\n";
  }
}

void write_moe_phase_json(std::ostream& out, std::string_view op, std::string_view mode,
                          int32_t tokens, const MoePhaseResult& r) {
  out << std::setprecision(10) << "{\n"
      << "  \"op\": \"" << op << "\",\n"
      << "  \"mode\": \"" << mode << "\",\n"
      << "  \"gpus\": " << r.gpus << ",\n"
      << "  \"nodes\": " << r.nodes << ",\n"
      << "  \"tokens_per_gpu\": " << tokens << ",\n"
      << "  \"routed_pairs\": " << r.routed_pairs << ",\n"
      << "  \"flows\": " << r.flows << ",\n"
      << "  \"time_us\": " << r.time_us() << ",\n"
      << "  \"bandwidth_gbps\": {\"nvlink\": " << r.nvlink_gbps() << ", \"rdma\": " << r.rdma_gbps()
      << "},\n"
      << "  \"bytes_per_gpu\": {\"nvlink\": " << r.deepep_nvlink_bytes_per_gpu
      << ", \"rdma\": " << r.deepep_rdma_bytes_per_gpu << "},\n"
      << "  \"wire_bandwidth_gbps\": {\"nvlink\": " << r.wire_nvlink_gbps()
      << ", \"network\": " << r.wire_network_gbps() << "},\n"
      << "  \"wire_bytes_per_gpu\": {\"nvlink\": " << r.wire_nvlink_bytes_per_gpu
      << ", \"network\": " << r.wire_network_bytes_per_gpu << "},\n"
      << "  \"flow_time_us\": " << r.flow_time.to_us() << ",\n"
      << "  \"kernel_time_us\": " << r.bounds.kernel.to_us() << ",\n"
      << "  \"bound\": \"" << to_string(r.bounds.bound) << "\",\n"
      << "  \"busy_us\": {";
  for (int i = 0; i < kCommResources; ++i) {
    const auto resource = static_cast<CommResource>(i);
    if (resource == CommResource::kLinks) continue;
    out << (i == 0 ? "" : ", ") << "\"" << to_string(resource)
        << "\": " << r.bounds.busy[static_cast<size_t>(i)].to_us();
  }
  out << "}\n"
      << "}\n";
}

void print_moe_phase_table(std::ostream& out, std::string_view op, std::string_view mode,
                           int32_t tokens, const MoePhaseResult& r) {
  out << std::fixed << std::setprecision(1) << op << " (" << mode << "), EP" << r.gpus << " on "
      << r.nodes << (r.nodes == 1 ? " node" : " nodes") << ", " << tokens << " tokens per GPU\n"
      << "  time                 " << r.time_us() << " us\n"
      << "  DeepEP bandwidth     NVLink " << r.nvlink_gbps() << " GB/s, RDMA " << r.rdma_gbps()
      << " GB/s\n"
      << "  bytes on the wire    NVLink " << r.wire_nvlink_gbps() << " GB/s, network "
      << r.wire_network_gbps() << " GB/s per GPU\n"
      << "  bound by             " << to_string(r.bounds.bound) << " (flow model "
      << r.flow_time.to_us() << " us, kernel SMs and NICs " << r.bounds.kernel.to_us() << " us)\n"
      << "  busiest, each        ";
  for (int i = 0; i < kCommResources; ++i) {
    const auto resource = static_cast<CommResource>(i);
    if (resource == CommResource::kLinks) continue;
    out << (i == 0 ? "" : ", ") << to_string(resource) << " "
        << r.bounds.busy[static_cast<size_t>(i)].to_us() << " us";
  }
  out << "\n";
}

}  // namespace moesim
