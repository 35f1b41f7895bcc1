// Writes a routing trace: the header, then records appended one at a time, each checked against
// the header and the batch-major order before it reaches the file.
#pragma once

#include <filesystem>
#include <fstream>
#include <memory>
#include <ostream>
#include <string>

#include "models/trace/trace_format.h"

namespace moesim {

namespace proto {
class TraceRecord;
}

class TraceWriter {
 public:
  // Creates (truncates) the file and writes the header. Throws TraceError.
  TraceWriter(const std::filesystem::path& path, const TraceHeader& header);
  // Writes to a caller-owned stream (kept by reference), named `name` in errors.
  TraceWriter(std::ostream& out, const TraceHeader& header, std::string name = "<stream>");
  ~TraceWriter();
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;

  // Appends the next record; it must be batch records_written() / layers, layer
  // records_written() % layers. Throws TraceError if it does not fit.
  void append(const TraceRecord& record);
  // Flushes, checks that every batch is complete (all layers written) and closes an owned file.
  void close();

  int64_t records_written() const { return records_; }
  const TraceHeader& header() const { return header_; }

 private:
  void write_header();
  std::unique_ptr<std::ofstream> owned_;
  std::ostream* out_;
  std::string name_;
  TraceHeader header_;
  std::unique_ptr<proto::TraceRecord> message_;  // reused so appends do not reallocate
  int64_t records_ = 0;
  bool closed_ = false;
};

}  // namespace moesim
