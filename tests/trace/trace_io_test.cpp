// Trace writer and reader: round trip, the format as protobuf's own delimited API sees it,
// every malformed-trace error, and streaming a trace larger than protobuf's stream limits.
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/util/delimited_message_util.h>

#include <catch2/catch.hpp>
#include <sstream>
#include <streambuf>

#include "models/trace/trace_reader.h"
#include "models/trace/trace_writer.h"
#include "models/trace/trace.pb.h"
#include "tests/trace/trace_test_util.h"

using namespace moesim;

namespace {

TraceHeader small_header(bool weights) {
  TraceHeader h;
  h.layers = 2;
  h.experts = 4;
  h.top_k = 2;
  h.source = "hand-made";
  h.tokens_per_batch = 3;
  h.has_weights = weights;
  return h;
}

TraceRecord id_record(int64_t batch, int32_t layer, std::vector<int32_t> ids,
                      std::vector<float> weights = {}) {
  TraceRecord r;
  r.batch = batch;
  r.layer = layer;
  r.tokens = static_cast<int32_t>(ids.size() / 2);
  r.expert_ids = std::move(ids);
  r.weights = std::move(weights);
  return r;
}

// Writes header and records with protobuf's delimited API, bypassing TraceWriter's checks.
void write_raw(const std::filesystem::path& path, const proto::TraceHeader& h,
               const std::vector<proto::TraceRecord>& records) {
  std::ofstream out(path, std::ios::binary);
  google::protobuf::util::SerializeDelimitedToOstream(h, &out);
  for (const auto& r : records) google::protobuf::util::SerializeDelimitedToOstream(r, &out);
}

proto::TraceHeader raw_header(int32_t layers, int32_t experts, int32_t top_k) {
  proto::TraceHeader h;
  h.set_magic(kTraceMagic);
  h.set_version(kTraceVersion);
  h.set_layers(layers);
  h.set_experts(experts);
  h.set_top_k(top_k);
  return h;
}

proto::TraceRecord raw_record(int64_t batch, int32_t layer, int32_t tokens,
                              std::vector<int32_t> ids) {
  proto::TraceRecord r;
  r.set_batch(batch);
  r.set_layer(layer);
  r.set_tokens(tokens);
  for (int32_t id : ids) r.add_expert_ids(id);
  return r;
}

std::string error_of(const std::filesystem::path& path) {
  try {
    TraceReader reader(path);
    TraceRecord r;
    while (reader.next(r)) {
    }
  } catch (const TraceError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a written trace reads back equal, record by record") {
  test::ScratchDir dir("roundtrip");
  const auto path = dir / "t.trace";
  std::vector<TraceRecord> records = {
      id_record(0, 0, {0, 1, 2, 3, 3, 0}, {0.5f, 0.5f, 0.9f, 0.1f, 0.7f, 0.3f}),
      id_record(0, 1, {1, 2, 1, 3, 0, 2}, {0.6f, 0.4f, 0.8f, 0.2f, 0.5f, 0.5f}),
      id_record(1, 0, {2, 3}, {1.0f, 0.0f}),
      id_record(1, 1, {0, 1}, {0.25f, 0.75f}),
  };
  {
    TraceWriter writer(path, small_header(true));
    for (const auto& r : records) writer.append(r);
    writer.close();
    CHECK(writer.records_written() == 4);
  }
  TraceReader reader(path);
  CHECK(reader.header() == small_header(true));
  TraceRecord got;
  for (size_t i = 0; i < records.size(); ++i) {
    REQUIRE(reader.next(got));
    CHECK(got == records[i]);
    CHECK(reader.record_index() == static_cast<int64_t>(i));
  }
  CHECK_FALSE(reader.next(got));
}

TEST_CASE("the file is protobuf's length-delimited stream of a header then records") {
  test::ScratchDir dir("delimited");
  const auto path = dir / "t.trace";
  {
    TraceWriter writer(path, small_header(false));
    writer.append(id_record(0, 0, {3, 1}));
    writer.append(id_record(0, 1, {2, 0}));
    writer.close();
  }
  std::ifstream in(path, std::ios::binary);
  google::protobuf::io::IstreamInputStream zin(&in);
  proto::TraceHeader h;
  proto::TraceRecord r;
  bool clean_eof = false;
  REQUIRE(google::protobuf::util::ParseDelimitedFromZeroCopyStream(&h, &zin, &clean_eof));
  CHECK(h.magic() == "moesim-trace");
  CHECK(h.experts() == 4);
  REQUIRE(google::protobuf::util::ParseDelimitedFromZeroCopyStream(&r, &zin, &clean_eof));
  CHECK(r.expert_ids(0) == 3);
  CHECK(r.expert_ids(1) == 1);
  REQUIRE(google::protobuf::util::ParseDelimitedFromZeroCopyStream(&r, &zin, &clean_eof));
  CHECK(r.layer() == 1);
  CHECK_FALSE(google::protobuf::util::ParseDelimitedFromZeroCopyStream(&r, &zin, &clean_eof));
  CHECK(clean_eof);
}

TEST_CASE("a record cut mid-way is reported with its index and byte offset") {
  test::ScratchDir dir("truncated");
  const TraceHeader h = small_header(false);
  const auto two = dir / "two.trace";
  const auto three = dir / "three.trace";
  for (const auto& [path, batches] : {std::pair{two, 1}, std::pair{three, 2}}) {
    TraceWriter writer(path, h);
    for (int b = 0; b < batches; ++b) {
      writer.append(id_record(b, 0, {0, 1, 2, 3, 1, 2}));
      writer.append(id_record(b, 1, {3, 2, 1, 0, 2, 1}));
    }
    writer.close();
  }
  // The one-batch file ends exactly where the two-batch file's record 2 starts.
  const auto record2_offset = static_cast<int64_t>(std::filesystem::file_size(two));
  const std::string full = test::read_bytes(three);
  test::write_text(dir / "cut.trace", full.substr(0, record2_offset + 5));
  const std::string err = error_of(dir / "cut.trace");
  CHECK_THAT(err, Catch::Contains("record 2 at byte offset " + std::to_string(record2_offset)));
  CHECK_THAT(err, Catch::Contains("truncated record"));

  // Cut between records, inside a batch: also an error, never a silent short trace.
  std::string whole_record3;
  {
    TraceReader reader(three);
    TraceRecord r;
    for (int i = 0; i < 3; ++i) reader.next(r);
    test::write_text(dir / "cut2.trace", full.substr(0, reader.next_offset()));
  }
  CHECK_THAT(error_of(dir / "cut2.trace"), Catch::Contains("record 3 at byte offset"));
  CHECK_THAT(error_of(dir / "cut2.trace"), Catch::Contains("inside batch 1"));

  // Cut inside the length prefix of the first record.
  proto::TraceRecord big = raw_record(0, 0, 100, std::vector<int32_t>(200, 1));
  write_raw(dir / "prefix.trace", raw_header(1, 4, 2), {big});
  const std::string p = test::read_bytes(dir / "prefix.trace");
  const auto header_bytes = static_cast<int64_t>(p.size() - big.ByteSizeLong() - 2);
  test::write_text(dir / "prefix_cut.trace", p.substr(0, header_bytes + 1));
  CHECK_THAT(error_of(dir / "prefix_cut.trace"),
             Catch::Contains("record 0 at byte offset " + std::to_string(header_bytes)));
}

TEST_CASE("an expert id out of range names record and offset and token and value") {
  test::ScratchDir dir("range");
  write_raw(dir / "t.trace", raw_header(1, 4, 2),
            {raw_record(0, 0, 2, {0, 1, 2, 3}), raw_record(1, 0, 2, {0, 1, 2, 7})});
  const std::string err = error_of(dir / "t.trace");
  CHECK_THAT(err, Catch::Contains("record 1 at byte offset"));
  CHECK_THAT(err, Catch::Contains("token 1 slot 1: expert id 7 is out of range [0, 4)"));
  write_raw(dir / "neg.trace", raw_header(1, 4, 2), {raw_record(0, 0, 1, {0, -3})});
  CHECK_THAT(error_of(dir / "neg.trace"), Catch::Contains("expert id -3 is out of range"));
}

TEST_CASE("a k that disagrees with the header is an error") {
  test::ScratchDir dir("k");
  // Header top-2; the record holds 3 tokens of top-3 (9 ids).
  write_raw(dir / "t.trace", raw_header(1, 8, 2),
            {raw_record(0, 0, 3, {0, 1, 2, 3, 4, 5, 6, 7, 0})});
  CHECK_THAT(error_of(dir / "t.trace"), Catch::Contains("k disagrees with the header"));
  // 4 ids would be 2 tokens of top-2, but the record says 1 token (it logged top-4).
  write_raw(dir / "t2.trace", raw_header(1, 8, 2), {raw_record(0, 0, 1, {0, 1, 2, 3})});
  CHECK_THAT(error_of(dir / "t2.trace"), Catch::Contains("k disagrees with the header"));
}

TEST_CASE("records out of batch-layer order and bad headers and non-traces are errors") {
  test::ScratchDir dir("order");
  write_raw(dir / "skip.trace", raw_header(2, 4, 1),
            {raw_record(0, 0, 1, {0}), raw_record(1, 0, 1, {0})});
  CHECK_THAT(error_of(dir / "skip.trace"),
             Catch::Contains("record 1") && Catch::Contains("expected batch 0 layer 1"));
  write_raw(dir / "layers.trace", raw_header(2, 4, 1),
            {raw_record(0, 0, 1, {0}), raw_record(0, 1, 1, {0}), raw_record(1, 2, 1, {0})});
  CHECK_THAT(error_of(dir / "layers.trace"), Catch::Contains("found batch 1 layer 2"));
  write_raw(dir / "k0.trace", raw_header(1, 4, 0), {});
  CHECK_THAT(error_of(dir / "k0.trace"), Catch::Contains("top_k must be in [1, experts=4]"));
  test::write_text(dir / "text.trace", "layer,token,expert_ids\n0,0,1 2\n");
  CHECK_THAT(error_of(dir / "text.trace"), Catch::Contains("not a moesim trace"));
  test::write_text(dir / "empty.trace", "");
  CHECK_THAT(error_of(dir / "empty.trace"), Catch::Contains("empty file"));
  CHECK_THAT(error_of(dir / "absent.trace"), Catch::Contains("cannot open"));
}

TEST_CASE("the writer refuses records that do not fit the header or the order") {
  std::ostringstream out;
  TraceWriter writer(out, small_header(false), "mem");
  CHECK_THROWS_WITH(writer.append(id_record(0, 1, {0, 1})),
                    Catch::Contains("expected batch 0 layer 0"));
  CHECK_THROWS_WITH(writer.append(id_record(0, 0, {0, 9})), Catch::Contains("out of range"));
  writer.append(id_record(0, 0, {0, 1}));
  CHECK_THROWS_WITH(writer.close(), Catch::Contains("incomplete batch"));
}

namespace {

std::string delimited(const google::protobuf::MessageLite& m) {
  std::ostringstream out;
  google::protobuf::util::SerializeDelimitedToOstream(m, &out);
  return out.str();
}

// Serves a trace of `records` one-layer records, each generated when the reader reaches it, so
// the trace never exists whole anywhere. Record i routes token t to experts
// (i + t) % experts and (i + t + 1) % experts.
class GeneratedTrace : public std::streambuf {
 public:
  static constexpr int32_t kTokens = 1024;
  static constexpr int32_t kExperts = 64;

  explicit GeneratedTrace(int64_t records) : records_(records) {
    proto::TraceHeader h = raw_header(1, kExperts, 2);
    header_ = delimited(h);
    total_ = static_cast<int64_t>(header_.size());
    for (int64_t i = 0; i < records_; ++i) total_ += static_cast<int64_t>(serialized(i).size());
    current_ = header_;
    setg(current_.data(), current_.data(), current_.data() + current_.size());
  }
  int64_t total_bytes() const { return total_; }
  size_t largest_record_bytes() const { return largest_; }

 protected:
  int_type underflow() override {
    if (next_ >= records_) return traits_type::eof();
    current_ = serialized(next_++);
    setg(current_.data(), current_.data(), current_.data() + current_.size());
    return traits_type::to_int_type(current_[0]);
  }
  // Only what the reader asks: its size (seek to the end), then back to the start.
  pos_type seekoff(off_type off, std::ios_base::seekdir dir, std::ios_base::openmode) override {
    if (off == 0 && dir == std::ios_base::end) {
      at_end_ = true;
      return total_;
    }
    if (off == 0 && dir == std::ios_base::cur && at_end_) return total_;
    if (off == 0 && dir == std::ios_base::beg) return seekpos(0, std::ios_base::in);
    return pos_type(off_type(-1));
  }
  pos_type seekpos(pos_type pos, std::ios_base::openmode) override {
    if (pos != 0) return pos_type(off_type(-1));
    at_end_ = false;
    next_ = 0;
    current_ = header_;
    setg(current_.data(), current_.data(), current_.data() + current_.size());
    return 0;
  }

 private:
  std::string serialized(int64_t i) {
    record_.Clear();
    record_.set_batch(i);
    record_.set_tokens(kTokens);
    for (int32_t t = 0; t < kTokens; ++t) {
      record_.add_expert_ids(static_cast<int32_t>((i + t) % kExperts));
      record_.add_expert_ids(static_cast<int32_t>((i + t + 1) % kExperts));
    }
    std::string s = delimited(record_);
    largest_ = std::max(largest_, s.size());
    return s;
  }

  int64_t records_;
  int64_t next_ = 0;
  int64_t total_ = 0;
  size_t largest_ = 0;
  bool at_end_ = false;
  std::string header_;
  std::string current_;
  proto::TraceRecord record_;
};

}  // namespace

TEST_CASE("a trace larger than protobuf's 64 MiB stream limit streams one record at a time") {
  // 2048 ids of 1 byte each make records of about 2 KiB; 40,000 of them are about 80 MiB.
  constexpr int64_t kRecords = 40'000;
  auto buf = std::make_unique<GeneratedTrace>(kRecords);
  GeneratedTrace* source = buf.get();
  REQUIRE(source->total_bytes() > (int64_t{64} << 20));
  auto stream = std::make_unique<std::istream>(source);
  TraceReader reader(std::move(stream), "generated");
  TraceRecord record;
  int64_t n = 0;
  int64_t expert0_pairs = 0;
  while (reader.next(record)) {
    REQUIRE(record.batch == n);
    for (int32_t id : record.expert_ids) expert0_pairs += id == 0;
    ++n;
  }
  CHECK(n == kRecords);
  CHECK(reader.next_offset() == source->total_bytes());
  // Each record holds each expert exactly 2 * 1024 / 64 = 32 times (two consecutive residues).
  CHECK(expert0_pairs == kRecords * 32);
  // The reader holds one record's bytes, never the stream: its buffer is one record long
  // (at most twice that, as a growing string doubles its capacity).
  CHECK(reader.buffer_capacity_bytes() <= 2 * source->largest_record_bytes());
  CHECK(record.expert_ids.capacity() < 4096);
}
