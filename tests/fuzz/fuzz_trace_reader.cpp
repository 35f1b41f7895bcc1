// libFuzzer target: arbitrary bytes as a trace file, read record by record and replayed.
// Any outcome but a clean read or a TraceError (a crash, another exception, a sanitizer report)
// is a bug.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>

#include "models/trace/trace_reader.h"
#include "models/trace/trace_routing_source.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    moesim::TraceReader reader(std::make_unique<std::istringstream>(bytes), "fuzz");
    moesim::TraceRecord record;
    while (reader.next(record)) {
    }
  } catch (const moesim::TraceError&) {
  }
  try {
    moesim::TraceRoutingSource source(
        std::make_unique<moesim::TraceReader>(std::make_unique<std::istringstream>(bytes), "fuzz"));
    moesim::RoutingDecision out;
    moesim::RoutingRequest q;
    q.ranks = 3;
    // Beyond the trace's batches, so short traces wrap; every layer, every rank.
    for (q.micro_batch = 0; q.micro_batch < 4; ++q.micro_batch) {
      for (q.layer = 0; q.layer < source.layers() && q.layer < 64; ++q.layer) {
        for (q.rank = 0; q.rank < q.ranks; ++q.rank) source.route(q, out);
      }
    }
  } catch (const moesim::TraceError&) {
  }
  return 0;
}
