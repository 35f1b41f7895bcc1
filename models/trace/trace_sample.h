// Routing traces and imported logs as a RoutingSample (models/router/routing_statistics.h): the
// token stream that the token-model fit and its statistics read, with start-up batches removed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "models/router/routing_statistics.h"
#include "models/trace/trace_format.h"
#include "models/trace/trace_reader.h"

namespace moesim {

struct TraceSample {
  TraceHeader header;
  RoutingSample sample;  // each trace batch's first token starts a sequence
  int64_t trace_batches = 0;
};

// Reads every batch of the trace in order. Throws TraceError for a count-only trace (the fit
// needs each token's experts) or any error the reader finds.
TraceSample read_trace_sample(TraceReader& reader);
TraceSample read_trace_sample(const std::filesystem::path& trace);

// Which reader takes an input: a moesim trace, or a log `moesim import` reads (CSV, JSON Lines,
// .npy layer files: a folder or one file).
enum class RoutingLogFormat : uint8_t { kTrace, kCsv, kJsonl, kNpy };
// `given` is "trace", "csv", "jsonl", "npy" or empty for the input's extension (.csv, .jsonl,
// .npy or a folder; anything else is read as a trace). Throws std::invalid_argument otherwise.
RoutingLogFormat routing_log_format(const std::filesystem::path& input, const std::string& given);

// Reads `input` as `format` into a sample: logs are imported in memory exactly as `moesim
// import` would (with `experts` routed experts, 0 for the log's own or max id + 1, which adds a
// warning to `warnings`), one batch unless the log numbers its batches.
TraceSample load_trace_sample(const std::filesystem::path& input, RoutingLogFormat format,
                              int32_t experts, std::vector<std::string>& warnings);

// Runs of at least `min_run` consecutive tokens whose expert ids equal their predecessor's in
// every layer (a token and the run's first one count: a run of n identical rows has length n).
// A serving stack's start-up profiling batch looks like this (one dummy prompt repeated); real
// prompts, whose hidden states differ token to token, do not.
struct IdenticalRun {
  int64_t first_token = 0;
  int64_t tokens = 0;
};
std::vector<IdenticalRun> identical_runs(const RoutingSample& sample, int64_t min_run);

// `sample` without the tokens of `runs` (as identical_runs gives them); the token after a removed
// run starts a sequence.
RoutingSample without_runs(const RoutingSample& sample, const std::vector<IdenticalRun>& runs);

}  // namespace moesim
