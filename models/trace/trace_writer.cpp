#include "models/trace/trace_writer.h"

#include <google/protobuf/util/delimited_message_util.h>

#include "models/trace/trace.pb.h"

namespace moesim {

TraceWriter::TraceWriter(const std::filesystem::path& path, const TraceHeader& header)
    : owned_(std::make_unique<std::ofstream>(path, std::ios::binary | std::ios::trunc)),
      out_(owned_.get()),
      name_(path.string()),
      header_(header),
      message_(std::make_unique<proto::TraceRecord>()) {
  if (!*owned_) throw TraceError(name_ + ": cannot open for writing");
  write_header();
}

TraceWriter::TraceWriter(std::ostream& out, const TraceHeader& header, std::string name)
    : out_(&out),
      name_(std::move(name)),
      header_(header),
      message_(std::make_unique<proto::TraceRecord>()) {
  write_header();
}

// A destructor cannot report errors; callers who care call close() themselves.
TraceWriter::~TraceWriter() {
  if (!closed_ && out_ != nullptr) out_->flush();
}

void TraceWriter::write_header() {
  validate_header(header_, name_);
  proto::TraceHeader h;
  h.set_magic(kTraceMagic);
  h.set_version(kTraceVersion);
  h.set_layers(header_.layers);
  h.set_experts(header_.experts);
  h.set_top_k(header_.top_k);
  h.set_source(header_.source);
  h.set_tokens_per_batch(header_.tokens_per_batch);
  h.set_has_weights(header_.has_weights);
  if (!google::protobuf::util::SerializeDelimitedToOstream(h, out_) || !*out_) {
    throw TraceError(name_ + ": write failed (header)");
  }
}

void TraceWriter::append(const TraceRecord& record) {
  if (closed_) throw TraceError(name_ + ": append after close");
  validate_record(header_, record, records_, name_ + ": record " + std::to_string(records_));
  proto::TraceRecord& m = *message_;
  m.set_batch(record.batch);
  m.set_layer(record.layer);
  m.set_tokens(record.tokens);
  m.mutable_expert_ids()->Assign(record.expert_ids.begin(), record.expert_ids.end());
  m.mutable_weights()->Assign(record.weights.begin(), record.weights.end());
  m.mutable_expert_counts()->Assign(record.expert_counts.begin(), record.expert_counts.end());
  if (!google::protobuf::util::SerializeDelimitedToOstream(m, out_) || !*out_) {
    throw TraceError(name_ + ": write failed at record " + std::to_string(records_));
  }
  ++records_;
}

void TraceWriter::close() {
  if (closed_) return;
  closed_ = true;
  out_->flush();
  if (!*out_) throw TraceError(name_ + ": write failed (flush)");
  if (owned_) {
    owned_->close();
    if (!*owned_) throw TraceError(name_ + ": write failed (close)");
  }
  if (records_ % header_.layers != 0) {
    throw TraceError(name_ + ": closed with an incomplete batch: " + std::to_string(records_) +
                     " records is not a multiple of " + std::to_string(header_.layers) + " layers");
  }
}

}  // namespace moesim
