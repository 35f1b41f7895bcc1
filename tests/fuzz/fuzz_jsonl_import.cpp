// libFuzzer target: arbitrary bytes as a JSON Lines routing log, imported and written as a
// trace in memory. Any outcome but success or a TraceError is a bug.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "models/trace/import_jsonl.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  try {
    const moesim::ImportedRouting routing = moesim::read_jsonl(in, "fuzz.jsonl");
    std::ostringstream out;
    moesim::ImportOptions options;
    // Batches of 3 tokens, unless the log numbers its batches itself.
    options.tokens_per_batch = routing.batch_tokens.empty() ? 3 : 0;
    moesim::write_imported(routing, options, out, "fuzz.trace");
  } catch (const moesim::TraceError&) {
  }
  return 0;
}
