// Straggler attribution as moesim prints it: per forward exchange, its time, its load and the GPU
// it waited for, as the run JSON's parallel arrays, the table's slowest exchanges and the report.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <span>
#include <string_view>
#include <vector>

#include "sim/exchange_load.h"

namespace moesim {

// The per-exchange figures, in the order the JSON's arrays and the report's CSV columns list them.
enum class ExchangeField : uint8_t {
  kStep,
  kMicroBatch,
  kMoeLayer,
  kReplica,
  kTimeUs,             // dispatch launch to combine finish
  kAllToAllUs,         // dispatch's plus combine's launch to finish
  kExpertMaxOverMean,  // the exchange's load (sim/exchange_load.h)
  kGpuMaxOverMean,
  kStragglerGpu,  // the combine's last-arriving member
  kStragglerRows,
  kStragglerRowsOverMean,  // its rows over the mean over the replica's GPUs
  kStragglerExpert,        // its hottest local expert (routed expert index)
  kStragglerExpertRows,
};
inline constexpr size_t kExchangeFieldCount = 13;

// Each field's JSON key and CSV column (with its unit, as the sweep metrics carry theirs) and
// its label in the table and on the report page: the one list every output reads.
struct ExchangeFieldName {
  std::string_view key;
  std::string_view label;
};
inline constexpr std::array<ExchangeFieldName, kExchangeFieldCount> kExchangeFields = {{
    {"step", "step"},
    {"micro_batch", "mb"},
    {"moe_layer", "layer"},
    {"replica", "replica"},
    {"time_us", "time us"},
    {"alltoall_us", "all-to-all us"},
    {"expert_max_over_mean", "expert max/mean"},
    {"gpu_max_over_mean", "GPU max/mean"},
    {"straggler_gpu", "last GPU"},
    {"straggler_rows", "its rows"},
    {"straggler_rows_over_mean", "rows/mean"},
    {"straggler_expert", "hot expert"},
    {"straggler_expert_rows", "expert rows"},
}};
const ExchangeFieldName& exchange_field_name(ExchangeField field);

// The record's value of `field` (integers exactly: counts stay far below 2^53).
double exchange_field(const ExchangeRecord& record, ExchangeField field);

// Indices into `exchanges` of the `count` slowest (longest time first; ties in record order).
inline constexpr size_t kSlowestExchangesShown = 5;
std::vector<size_t> slowest_exchanges(std::span<const ExchangeRecord> exchanges, size_t count);

// How many exchanges waited for a GPU that computed the most rows in its replica (ties count):
// all of them when overload sets the order of arrival at the combine.
size_t straggler_was_busiest(std::span<const ExchangeRecord> exchanges);

// `"exchanges": {"count": N, "<key>": [one value per exchange], ...}` over every field, one
// array per line, indented by two spaces; no trailing comma or newline.
void write_exchanges_json(std::ostream& out, std::span<const ExchangeRecord> exchanges);

// The table's lines: how often the last GPU was the busiest, then the slowest exchanges.
// Nothing without exchanges.
void print_slowest_exchanges(std::ostream& out, std::span<const ExchangeRecord> exchanges);

}  // namespace moesim
