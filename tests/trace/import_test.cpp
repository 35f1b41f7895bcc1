// Importers: CSV, JSON Lines and .npy round trips, the real vLLM traces checked against counts
// made here by plain string scanning, and the importers' error messages.
#include <catch2/catch.hpp>
#include <cstring>
#include <sstream>

#include "models/trace/import_csv.h"
#include "models/trace/import_jsonl.h"
#include "models/trace/import_npy.h"
#include "models/trace/trace_reader.h"
#include "models/trace/trace_routing_source.h"
#include "tests/trace/trace_test_util.h"

using namespace moesim;

namespace {

std::vector<TraceRecord> read_all(const std::filesystem::path& path,
                                  TraceHeader* header = nullptr) {
  TraceReader reader(path);
  if (header != nullptr) *header = reader.header();
  std::vector<TraceRecord> out;
  TraceRecord r;
  while (reader.next(r)) out.push_back(r);
  return out;
}

// A .npy file as numpy.save writes it: version 1.0, header padded so data starts at 64 bytes.
void write_npy(const std::filesystem::path& path, const std::string& descr, int64_t rows,
               int64_t cols, const std::vector<int64_t>& values) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  for (int64_t v : values) {
    if (descr == "<i4") {
      const auto v32 = static_cast<int32_t>(v);
      bytes.append(reinterpret_cast<const char*>(&v32), 4);
    } else {
      bytes.append(reinterpret_cast<const char*>(&v), 8);
    }
  }
  test::write_text(path, bytes);
}

std::string import_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const TraceError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("CSV rows in any order import to batches of tokens_per_batch with weights kept") {
  test::ScratchDir dir("csv");
  // Two layers, three tokens, top-2; ';' and ' ' separators; quoted field; CRLF line.
  test::write_text(dir / "r.csv",
                   "layer,token,expert_ids,weights\n"
                   "1,0,\"2;3\",0.5;0.5\n"
                   "0,1,1 2,0.75 0.25\r\n"
                   "0,0,0 1,0.9 0.1\n"
                   "1,2,0 3,0.6 0.4\n"
                   "0,2,3 0,1 0\n"
                   "1,1,1 0,0.2 0.8\n");
  ImportOptions opt;
  opt.experts = 4;
  opt.tokens_per_batch = 2;
  const ImportResult res = import_csv(dir / "r.csv", opt, dir / "r.trace");
  CHECK(res.batches == 2);
  CHECK(res.warnings.empty());
  TraceHeader h;
  const auto recs = read_all(dir / "r.trace", &h);
  CHECK(h.layers == 2);
  CHECK(h.top_k == 2);
  CHECK(h.experts == 4);
  CHECK(h.tokens_per_batch == 2);
  CHECK(h.has_weights);
  REQUIRE(recs.size() == 4);
  CHECK(recs[0].expert_ids == std::vector<int32_t>{0, 1, 1, 2});
  CHECK(recs[0].weights == std::vector<float>{0.9f, 0.1f, 0.75f, 0.25f});
  CHECK(recs[1].expert_ids == std::vector<int32_t>{2, 3, 1, 0});
  CHECK(recs[2].batch == 1);
  CHECK(recs[2].tokens == 1);
  CHECK(recs[2].expert_ids == std::vector<int32_t>{3, 0});
  CHECK(recs[3].expert_ids == std::vector<int32_t>{0, 3});
}

TEST_CASE("CSV errors name the file, line and column") {
  test::ScratchDir dir("csv_err");
  auto err = [&](const std::string& text) {
    test::write_text(dir / "e.csv", text);
    return import_error([&] { import_csv(dir / "e.csv", {}, dir / "e.trace"); });
  };
  CHECK_THAT(err("layer,token,experts\n"), Catch::Contains("e.csv:1: column \"experts\": unknown"));
  CHECK_THAT(err("layer,token,expert_ids\n0,0,1 2\n0,1,1\n"),
             Catch::Contains("e.csv:3: column \"expert_ids\": 1 ids, but the first row has 2"));
  CHECK_THAT(err("layer,token,expert_ids\n0,0,1 2\n0,x,1 3\n"),
             Catch::Contains("e.csv:3: column \"token\""));
  CHECK_THAT(err("layer,token,expert_ids\n0,0,1;2 3\n"),
             Catch::Contains("e.csv:2: column \"expert_ids\""));
  CHECK_THAT(err("layer,token,expert_ids\n0,0,1 2\n0,0,1 3\n"), Catch::Contains("repeats token 0"));
  CHECK_THAT(err("layer,token,expert_ids\n0,0,1 2\n2,0,1 3\n"),
             Catch::Contains("layer 1 has no rows"));
  CHECK_THAT(err("layer,token,expert_ids\n0,0,1 2\n1,0,1 3\n1,1,0 1\n"),
             Catch::Contains("layer 1 has 2 tokens, layer 0 has 1"));
  CHECK_THAT(err("layer,token,expert_ids\n0,0,1 2\n\n"),
             Catch::Contains("e.csv:3: column \"layer\": empty line"));
}

TEST_CASE("JSONL rows import in file order with batches from the batch field") {
  test::ScratchDir dir("jsonl");
  test::write_text(
      dir / "r.jsonl",
      "{\"type\": \"meta\", \"model_id\": \"toy\", \"top_k\": 2, \"num_experts\": 6, "
      "\"layers_logged\": [0, 1], \"extra\": {\"a\": [1, {\"b\": null}]}}\n"
      "{\"layer\": 0, \"token_idx\": 0, \"batch\": 0, \"topk_ids\": [5, 1], \"req_id\": \"r0\"}\n"
      "{\"layer\": 1, \"token_idx\": 0, \"batch\": 0, \"topk_ids\": [0, 2]}\n"
      "{\"layer\": 0, \"token_idx\": 0, \"batch\": 4, \"topk_ids\": [3, 4], \"req_id\": 7}\n"
      "{\"type\": \"route\", \"layer\": 0, \"token\": 1, \"batch\": 4, \"topk_ids\": [2, 1]}\n"
      "{\"layer\": 1, \"token_idx\": 0, \"batch\": 4, \"topk_ids\": [1, 5]}\n"
      "{\"layer\": 1, \"token_idx\": 1, \"batch\": 4, \"topk_ids\": [4, 0]}\n");
  const ImportResult res = import_jsonl(dir / "r.jsonl", {}, dir / "r.trace");
  CHECK(res.warnings.empty());
  TraceHeader h;
  const auto recs = read_all(dir / "r.trace", &h);
  CHECK(h.experts == 6);
  CHECK(h.top_k == 2);
  CHECK(h.layers == 2);
  CHECK_FALSE(h.has_weights);
  CHECK(h.tokens_per_batch == 0);  // batches of 1 and 2 tokens
  CHECK_THAT(h.source, Catch::Contains("model_id=toy"));
  REQUIRE(recs.size() == 4);
  CHECK(recs[0].expert_ids == std::vector<int32_t>{5, 1});
  CHECK(recs[1].expert_ids == std::vector<int32_t>{0, 2});
  CHECK(recs[2].expert_ids == std::vector<int32_t>{3, 4, 2, 1});
  CHECK(recs[3].expert_ids == std::vector<int32_t>{1, 5, 4, 0});
}

TEST_CASE("JSONL errors name the file, line and field") {
  test::ScratchDir dir("jsonl_err");
  auto err = [&](const std::string& text, ImportOptions opt = {}) {
    test::write_text(dir / "e.jsonl", text);
    return import_error([&] { import_jsonl(dir / "e.jsonl", opt, dir / "e.trace"); });
  };
  const std::string meta = "{\"type\": \"meta\", \"top_k\": 2, \"num_experts\": 4}\n";
  CHECK_THAT(err(meta + "{\"layer\": 0, \"token_idx\": 0, \"topk_ids\": [1, 2, 3]}\n"),
             Catch::Contains("e.jsonl:2: field \"topk_ids\": 3 ids, but top_k is 2 (from line 1)"));
  CHECK_THAT(err(meta + "{\"layer\": 0, \"token_idx\": 0, \"topk_ids\": [1, 9]}\n"),
             Catch::Contains("e.jsonl:2: field \"topk_ids\": expert id 9 is out of range [0, 4)"));
  CHECK_THAT(err(meta + "{\"layer\": 0, \"token_idx\": 0, \"topk_ids\": [1, 2], \"score\": 1}\n"),
             Catch::Contains("e.jsonl:2: field \"score\": unknown field"));
  CHECK_THAT(err(meta + "{\"layer\": 0, \"topk_ids\": [1, 2]}\n"),
             Catch::Contains("e.jsonl:2: field \"token_idx\": missing"));
  CHECK_THAT(err(meta + "{\"layer\": \"0\", \"token_idx\": 0, \"topk_ids\": [1, 2]}\n"),
             Catch::Contains("e.jsonl:2: field \"layer\": expected an integer"));
  CHECK_THAT(err(meta + "{\"layer\": 0, \"token_idx\": 0, \"topk_ids\": [1, 2.5]}\n"),
             Catch::Contains("field \"topk_ids\": \"2.5\" is not an expert id"));
  CHECK_THAT(err(meta + "{\"layer\": 0, \"token_idx\": 0, \"topk_ids\": [1, 2],}\n"),
             Catch::Contains("e.jsonl:2: column 49: expected a key string"));
  CHECK_THAT(err(meta + "{\"layer\": 0, \"token_idx\": 0, \"topk_ids\": [1, 2]}\n" + meta),
             Catch::Contains("e.jsonl:3: field \"type\": a meta line may only be the first line"));
  CHECK_THAT(
      err(meta +
          "{\"layer\": 0, \"token_idx\": 0, \"topk_ids\": [1, 2], \"topk_weights\": [1, 0]}\n"
          "{\"layer\": 0, \"token_idx\": 1, \"topk_ids\": [1, 2]}\n"),
      Catch::Contains("e.jsonl:3: field \"topk_weights\": missing"));
  CHECK_THAT(err(meta + "{\"layer\": 0, \"token_idx\": 0, \"topk_ids\": [1, 2]}\n",
                 ImportOptions{5, 0, ""}),
             Catch::Contains("the input says 4 experts, the option says 5"));
}

TEST_CASE(".npy layer files import as layers and their shapes and dtypes are checked") {
  test::ScratchDir dir("npy");
  write_npy(dir / "layer_0.npy", "<i8", 3, 2, {0, 1, 2, 3, 7, 0});
  write_npy(dir / "layer_1.npy", "<i4", 3, 2, {4, 5, 6, 7, 1, 2});
  test::write_text(dir / "notes.txt", "not a layer");
  const auto files = npy_layer_files(dir.path());
  REQUIRE(files.size() == 2);
  CHECK(files[1].filename() == "layer_1.npy");
  ImportOptions opt;
  opt.tokens_per_batch = 2;
  const ImportResult res = import_npy(files, opt, dir / "n.trace");
  REQUIRE(res.warnings.size() == 1);  // no expert count in .npy: inferred 8 = max id + 1
  CHECK_THAT(res.warnings[0], Catch::Contains("inferred as max id + 1 = 8"));
  TraceHeader h;
  const auto recs = read_all(dir / "n.trace", &h);
  CHECK(h.experts == 8);
  CHECK(h.layers == 2);
  REQUIRE(recs.size() == 4);
  CHECK(recs[0].expert_ids == std::vector<int32_t>{0, 1, 2, 3});
  CHECK(recs[1].expert_ids == std::vector<int32_t>{4, 5, 6, 7});
  CHECK(recs[2].expert_ids == std::vector<int32_t>{7, 0});
  CHECK(recs[3].expert_ids == std::vector<int32_t>{1, 2});

  write_npy(dir / "bad_f.npy", "<f4", 1, 2, {0, 0});
  const std::vector<std::filesystem::path> f4 = {dir / "bad_f.npy"};
  CHECK_THAT(import_error([&] { read_npy_layers(f4); }), Catch::Contains("npy dtype '<f4'"));
  write_npy(dir / "short.npy", "<i4", 4, 2, {0, 1, 2});
  const std::vector<std::filesystem::path> sh = {dir / "short.npy"};
  CHECK_THAT(import_error([&] { read_npy_layers(sh); }),
             Catch::Contains("data ends after 3 of 8 values"));
  write_npy(dir / "other.npy", "<i4", 2, 2, {0, 1, 2, 3});
  const std::vector<std::filesystem::path> mixed = {dir / "layer_0.npy", dir / "other.npy"};
  CHECK_THAT(import_error([&] { read_npy_layers(mixed); }),
             Catch::Contains("shape (2, 2) differs from layer 0's (3, 2)"));
  std::filesystem::remove(dir / "layer_0.npy");
  CHECK_THAT(import_error([&] { npy_layer_files(dir.path()); }),
             Catch::Contains("layer_0.npy is missing"));
}

namespace {

// Counts expert ids in a vLLM route log by scanning for "topk_ids": [ ... ] in the raw text,
// without the importer's parser.
std::vector<int64_t> scan_counts(const std::filesystem::path& path, int64_t& rows) {
  const std::string text = test::read_bytes(path);
  std::vector<int64_t> counts;
  rows = 0;
  const std::string key = "\"topk_ids\": [";
  for (size_t p = text.find(key); p != std::string::npos; p = text.find(key, p)) {
    p += key.size();
    const size_t end = text.find(']', p);
    std::istringstream list(text.substr(p, end - p));
    std::string item;
    while (std::getline(list, item, ',')) {
      const size_t id = std::stoul(item);
      if (id >= counts.size()) counts.resize(id + 1, 0);
      ++counts[id];
    }
    ++rows;
  }
  return counts;
}

void check_real_trace(const std::string& file, int32_t top_k, int32_t experts,
                      int32_t option_experts, size_t warnings) {
  const std::filesystem::path src =
      std::filesystem::path(MOESIM_SOURCE_DIR "/../shared/traces") / file;
  if (!std::filesystem::exists(src)) FAIL("missing shared trace " << src);
  test::ScratchDir dir("real");
  ImportOptions opt;
  opt.experts = option_experts;
  const ImportResult res = import_jsonl(src, opt, dir / "real.trace");
  CHECK(res.warnings.size() == warnings);
  int64_t rows = 0;
  std::vector<int64_t> want = scan_counts(src, rows);
  want.resize(experts, 0);
  CHECK(res.tokens_per_layer == rows);

  TraceRoutingSource source(dir / "real.trace");
  CHECK(source.top_k() == top_k);
  CHECK(source.experts() == experts);
  CHECK(source.layers() == 1);
  RoutingDecision out;
  RoutingRequest q;
  source.route(q, out);
  CHECK(out.tokens == rows);
  REQUIRE(out.tokens_per_expert.size() == static_cast<size_t>(experts));
  for (int32_t e = 0; e < experts; ++e) {
    INFO("expert " << e);
    CHECK(out.tokens_per_expert[e] == want[e]);
  }
}

}  // namespace

TEST_CASE("real OLMoE trace per-expert counts match a plain scan of the file") {
  check_real_trace("olmoe-1b-7b-layer0.jsonl", 8, 64, 0, 0);
}

TEST_CASE("real Qwen trace experts are inferred with a warning or given as an option") {
  // Qwen1.5-MoE-A2.7B has 60 routed experts; the meta line does not say so.
  check_real_trace("qwen15-moe-a27b-layer0.jsonl", 4, 60, 0, 1);
  check_real_trace("qwen15-moe-a27b-layer0.jsonl", 4, 60, 60, 0);
}
