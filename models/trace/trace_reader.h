// Reads a routing trace sequentially, one record at a time in a reused buffer, so a trace far
// larger than memory streams in constant memory. Errors name the record index and byte offset.
#pragma once

#include <cstdint>
#include <filesystem>
#include <istream>
#include <memory>
#include <string>

#include "models/trace/trace_format.h"

namespace moesim {

namespace proto {
class TraceRecord;
}

class TraceReader {
 public:
  // Opens the file and reads its header. Throws TraceError.
  explicit TraceReader(const std::filesystem::path& path);
  // Reads from a seekable stream it takes over (a file, or bytes in memory), named `name`.
  TraceReader(std::unique_ptr<std::istream> in, std::string name);
  ~TraceReader();
  TraceReader(const TraceReader&) = delete;
  TraceReader& operator=(const TraceReader&) = delete;

  const TraceHeader& header() const { return header_; }
  const std::string& name() const { return name_; }

  // Reads the next record into `record` (its vectors keep their capacity). Returns false at a
  // clean end of file, after a whole batch. Throws TraceError for a truncated or malformed
  // record, or one that breaks the header or the order.
  bool next(TraceRecord& record);

  // The record last returned by next(): its index (0-based) and the byte offset of its length
  // prefix. Before the first next(), -1 and the offset of the first record.
  int64_t record_index() const { return index_; }
  int64_t record_offset() const { return record_offset_; }
  // Where the next record starts, and its index: what seek() takes to come back here.
  int64_t next_offset() const { return next_offset_; }
  int64_t next_index() const { return index_ + 1; }
  // The byte offset of the first record (just after the header).
  int64_t first_record_offset() const { return first_offset_; }
  int64_t file_bytes() const { return file_bytes_; }
  // Bytes the reader holds for record data: its one reused buffer, sized by the largest record
  // read so far (up to twice that, as a string grows), whatever the file's length.
  size_t buffer_capacity_bytes() const { return buffer_.capacity(); }

  // Makes the record at `byte_offset`, whose index is `record_index`, the next one read.
  // Offsets come from next_offset()/first_record_offset().
  void seek(int64_t byte_offset, int64_t record_index);

 private:
  void read_header();
  // Reads a varint length prefix at next_offset_; false at a clean end of file.
  bool read_length(uint64_t& length, int64_t index);
  std::string where(int64_t index, int64_t offset) const;

  std::unique_ptr<std::istream> in_;
  std::string name_;
  TraceHeader header_;
  std::string buffer_;                           // one record's bytes, reused
  std::unique_ptr<proto::TraceRecord> message_;  // reused so records do not reallocate
  int64_t file_bytes_ = 0;
  int64_t first_offset_ = 0;
  int64_t next_offset_ = 0;
  int64_t record_offset_ = 0;
  int64_t index_ = -1;
};

}  // namespace moesim
