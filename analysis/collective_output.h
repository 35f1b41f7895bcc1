// What `moesim collective` and `moesim moe-collective` print: nccl-tests' size table (or its
// rows as JSON) and one DeepEP-style phase's time and bandwidth figures (table or JSON).
#pragma once

#include <cstdint>
#include <ostream>
#include <span>
#include <string_view>

#include "sim/moe_phase.h"

namespace moesim {

// One message size of a collective, as nccl-tests reports it: size is the per-GPU buffer,
// count = size / 4 (float elements).
struct CollectiveSizeRow {
  int64_t size_bytes = 0;
  double time_us = 0.0;
  double algbw_gbps = 0.0;  // GB/s
  double busbw_gbps = 0.0;  // GB/s
  uint64_t flows = 0;
  std::string_view network_tier = "exact";  // network_tier_name of the tier that timed it
};

// A JSON array of {size, count, time_us, algbw_gbps, busbw_gbps, flows, network_model}, 10
// significant digits.
void write_collective_json(std::ostream& out, std::span<const CollectiveSizeRow> rows);
// "# OP (ALGO) on N GPUs of TOPOLOGY, NETWORK network", then size, count, time, algbw and busbw in
// 14-wide columns (2 decimals). Leaves `out` in fixed notation.
void print_collective_table(std::ostream& out, std::string_view op, std::string_view algo, int gpus,
                            std::string_view topology, std::string_view network,
                            std::span<const CollectiveSizeRow> rows);

// One MoE phase (`moesim moe-collective`): op, mode, sizes, time and DeepEP's bandwidth and
// byte figures, as JSON (10 significant digits) or as a short table (1 decimal).
void write_moe_phase_json(std::ostream& out, std::string_view op, std::string_view mode,
                          int32_t tokens, const MoePhaseResult& r);
void print_moe_phase_table(std::ostream& out, std::string_view op, std::string_view mode,
                           int32_t tokens, const MoePhaseResult& r);

}  // namespace moesim
