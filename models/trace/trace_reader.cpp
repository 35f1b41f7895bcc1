#include "models/trace/trace_reader.h"

#include <fstream>
#include <limits>

#include "models/trace/trace.pb.h"

namespace moesim {

namespace {

// protobuf parses a message of at most 2 GiB; a larger prefix is corruption, not a record.
constexpr uint64_t kMaxMessageBytes = std::numeric_limits<int32_t>::max();

}  // namespace

TraceReader::TraceReader(const std::filesystem::path& path)
    : TraceReader(std::make_unique<std::ifstream>(path, std::ios::binary), path.string()) {}

TraceReader::TraceReader(std::unique_ptr<std::istream> in, std::string name)
    : in_(std::move(in)), name_(std::move(name)), message_(std::make_unique<proto::TraceRecord>()) {
  if (!in_ || !*in_) throw TraceError(name_ + ": cannot open for reading");
  in_->seekg(0, std::ios::end);
  const std::streamoff end = in_->tellg();
  if (end < 0) throw TraceError(name_ + ": not a seekable file");
  file_bytes_ = end;
  in_->seekg(0, std::ios::beg);
  read_header();
}

TraceReader::~TraceReader() = default;

std::string TraceReader::where(int64_t index, int64_t offset) const {
  return name_ + ": record " + std::to_string(index) + " at byte offset " + std::to_string(offset);
}

bool TraceReader::read_length(uint64_t& length, int64_t index) {
  length = 0;
  const int64_t start = next_offset_;
  for (int shift = 0;; shift += 7) {
    const int c = in_->get();
    if (c == std::char_traits<char>::eof()) {
      if (shift == 0 && next_offset_ == file_bytes_) {
        in_->clear();
        return false;
      }
      throw TraceError(where(index, start) + ": truncated record: the file ends inside its " +
                       "length prefix (file is " + std::to_string(file_bytes_) + " bytes)");
    }
    ++next_offset_;
    if (shift >= 63) throw TraceError(where(index, start) + ": malformed length prefix");
    length |= static_cast<uint64_t>(c & 0x7f) << shift;
    if ((c & 0x80) == 0) return true;
  }
}

void TraceReader::read_header() {
  uint64_t length = 0;
  if (!read_length(length, -1)) throw TraceError(name_ + ": empty file, no trace header");
  if (length > static_cast<uint64_t>(file_bytes_ - next_offset_)) {
    throw TraceError(name_ + ": not a moesim trace, or truncated header: header length " +
                     std::to_string(length) + " exceeds the file's remaining " +
                     std::to_string(file_bytes_ - next_offset_) + " bytes");
  }
  buffer_.resize(length);
  in_->read(buffer_.data(), static_cast<std::streamsize>(length));
  if (!*in_) throw TraceError(name_ + ": read failed in the header");
  next_offset_ += static_cast<int64_t>(length);
  proto::TraceHeader h;
  if (!h.ParseFromArray(buffer_.data(), static_cast<int>(length)) || h.magic() != kTraceMagic) {
    throw TraceError(name_ + ": not a moesim trace (no \"" + kTraceMagic + "\" header)");
  }
  if (h.version() != kTraceVersion) {
    throw TraceError(name_ + ": trace format version " + std::to_string(h.version()) +
                     ", this reader reads version " + std::to_string(kTraceVersion));
  }
  header_.layers = h.layers();
  header_.experts = h.experts();
  header_.top_k = h.top_k();
  header_.source = h.source();
  header_.tokens_per_batch = h.tokens_per_batch();
  header_.has_weights = h.has_weights();
  validate_header(header_, name_);
  first_offset_ = next_offset_;
  record_offset_ = next_offset_;
}

bool TraceReader::next(TraceRecord& record) {
  const int64_t index = index_ + 1;
  const int64_t offset = next_offset_;
  uint64_t length = 0;
  if (!read_length(length, index)) {
    if (index % header_.layers != 0) {
      throw TraceError(where(index, offset) + ": truncated trace: the file ends after " +
                       std::to_string(index) + " records, inside batch " +
                       std::to_string(index / header_.layers) + " (each batch has " +
                       std::to_string(header_.layers) + " layers)");
    }
    return false;
  }
  const uint64_t remaining = static_cast<uint64_t>(file_bytes_ - next_offset_);
  if (length > remaining) {
    throw TraceError(where(index, offset) + ": truncated record: its length prefix says " +
                     std::to_string(length) + " bytes, the file holds only " +
                     std::to_string(remaining) + " more");
  }
  if (length > kMaxMessageBytes) {
    throw TraceError(where(index, offset) + ": record of " + std::to_string(length) +
                     " bytes is over protobuf's 2 GiB message limit");
  }
  buffer_.resize(length);
  in_->read(buffer_.data(), static_cast<std::streamsize>(length));
  if (!*in_) throw TraceError(where(index, offset) + ": read failed");
  next_offset_ += static_cast<int64_t>(length);
  proto::TraceRecord& m = *message_;
  if (!m.ParseFromArray(buffer_.data(), static_cast<int>(length))) {
    throw TraceError(where(index, offset) + ": not a valid TraceRecord message");
  }
  record.batch = m.batch();
  record.layer = m.layer();
  record.tokens = m.tokens();
  record.expert_ids.assign(m.expert_ids().begin(), m.expert_ids().end());
  record.weights.assign(m.weights().begin(), m.weights().end());
  record.expert_counts.assign(m.expert_counts().begin(), m.expert_counts().end());
  validate_record(header_, record, index, where(index, offset));
  index_ = index;
  record_offset_ = offset;
  return true;
}

void TraceReader::seek(int64_t byte_offset, int64_t record_index) {
  if (byte_offset < first_offset_ || byte_offset > file_bytes_ || record_index < 0) {
    throw TraceError(name_ + ": seek to byte offset " + std::to_string(byte_offset) +
                     " outside the records [" + std::to_string(first_offset_) + ", " +
                     std::to_string(file_bytes_) + "]");
  }
  in_->clear();
  in_->seekg(byte_offset, std::ios::beg);
  if (!*in_) throw TraceError(name_ + ": seek failed");
  next_offset_ = byte_offset;
  index_ = record_index - 1;
  record_offset_ = byte_offset;
}

}  // namespace moesim
