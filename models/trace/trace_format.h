// In-memory forms of a routing trace's header and records, the invariants every trace keeps,
// and the error type readers, writers, importers and replay throw. File layout:
// models/trace/trace.proto.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace moesim {

inline constexpr const char* kTraceMagic = "moesim-trace";
inline constexpr uint32_t kTraceVersion = 1;
// Far above any MoE model (hundreds of layers, thousands of experts), low enough that a corrupt
// header or log cannot make replay or import allocate per-layer or per-expert tables of gigabytes.
inline constexpr int32_t kTraceMaxLayers = 1 << 16;
inline constexpr int32_t kTraceMaxExperts = 1 << 20;

// Every trace problem (bad file, bad record, bad request) is reported with this, its message
// naming the file and, where there is one, the record index and byte offset or the line.
class TraceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TraceHeader {
  int32_t layers = 0;            // MoE layers recorded per batch
  int32_t experts = 0;           // routed experts; ids are in [0, experts) or kNoExpert
  int32_t top_k = 0;             // slots per token
  std::string source;            // free text: model id, server, date, importer
  int32_t tokens_per_batch = 0;  // the most any record holds; 0 when batches vary freely
  bool has_weights = false;
  bool operator==(const TraceHeader&) const = default;
};

// One MoE layer of one batch. Id records fill expert_ids (tokens x top_k, token-major) and,
// when the header says so, weights; count-only records fill expert_counts (one per expert).
struct TraceRecord {
  int64_t batch = 0;
  int32_t layer = 0;
  int32_t tokens = 0;
  std::vector<int32_t> expert_ids;
  std::vector<float> weights;
  std::vector<int64_t> expert_counts;
  bool counts_only() const { return !expert_counts.empty(); }
  bool operator==(const TraceRecord&) const = default;
};

// Throws TraceError naming `where` unless the header describes a usable trace.
void validate_header(const TraceHeader& header, const std::string& where);

// Throws TraceError unless `record` fits `header` and is the `record_index`-th record of a
// trace (records form a dense batch-major grid: batch = index / layers, layer = index % layers).
// `where` names the file, record and byte offset in messages.
void validate_record(const TraceHeader& header, const TraceRecord& record, int64_t record_index,
                     const std::string& where);

}  // namespace moesim
