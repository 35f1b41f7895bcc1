// Straggler attribution's outputs from hand-made records: the slowest exchanges in order (ties in
// record order), how often the last GPU was the busiest, the JSON's parallel arrays and the
// table's rows, all named from the one field list.
#include <catch2/catch.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/exchange_output.h"

namespace moesim {
namespace {

ExchangeRecord record(int32_t step, int32_t layer, int64_t time_us, int64_t alltoall_us,
                      int32_t gpu, int64_t rows, int64_t busiest_rows) {
  ExchangeRecord r;
  r.step = step;
  r.load.expert_max_over_mean = 3.0;
  r.load.gpu_max_over_mean = static_cast<double>(busiest_rows) / 6.0;
  r.load.busiest_gpu_rows = busiest_rows;
  r.load.mean_gpu_rows = 6.0;
  r.straggler.micro_batch = 0;
  r.straggler.moe_layer = layer;
  r.straggler.replica = 1;
  r.straggler.gpu = gpu;
  r.straggler.rows = rows;
  r.straggler.hottest_expert = 2 * gpu + 1;
  r.straggler.hottest_expert_rows = rows - 1;
  r.straggler.time = Time::us(time_us);
  r.straggler.alltoall_time = Time::us(alltoall_us);
  return r;
}

// A: 30 us, its last GPU the busiest; B: 50 us, last GPU 5 rows of a busiest 9; C: 50 us, the
// busiest; D: 10 us, the busiest.
std::vector<ExchangeRecord> hand_records() {
  return {record(1, 0, 30, 10, 2, 9, 9), record(1, 1, 50, 40, 3, 5, 9),
          record(2, 0, 50, 5, 0, 12, 12), record(2, 1, 10, 5, 1, 6, 6)};
}

TEST_CASE("the slowest exchanges and how often the last GPU was the busiest", "[analysis]") {
  const std::vector<ExchangeRecord> e = hand_records();
  CHECK(slowest_exchanges(e, 2) == std::vector<size_t>{1, 2});  // the 50 us tie in order
  CHECK(slowest_exchanges(e, 10) == std::vector<size_t>{1, 2, 0, 3});
  CHECK(slowest_exchanges({}, 5).empty());
  CHECK(straggler_was_busiest(e) == 3);  // all but B
  CHECK(exchange_field(e[1], ExchangeField::kStragglerRowsOverMean) == Approx(5.0 / 6.0));
  CHECK(exchange_field(e[1], ExchangeField::kTimeUs) == 50.0);
  CHECK(exchange_field(e[1], ExchangeField::kStragglerExpert) == 7.0);
}

TEST_CASE("field names are distinct and carry their unit", "[analysis]") {
  std::set<std::string_view> keys, labels;
  for (const ExchangeFieldName& f : kExchangeFields) {
    keys.insert(f.key);
    labels.insert(f.label);
  }
  CHECK(keys.size() == kExchangeFieldCount);
  CHECK(labels.size() == kExchangeFieldCount);
  CHECK(exchange_field_name(ExchangeField::kTimeUs).key == "time_us");
  CHECK(exchange_field_name(ExchangeField::kAllToAllUs).key == "alltoall_us");
  CHECK(exchange_field_name(ExchangeField::kStragglerExpertRows).key == "straggler_expert_rows");
}

TEST_CASE("the exchanges as JSON arrays and as the table's slowest rows", "[analysis]") {
  const std::vector<ExchangeRecord> e = hand_records();
  std::ostringstream json;
  write_exchanges_json(json, std::span<const ExchangeRecord>(e).first(2));
  CHECK(json.str() ==
        "  \"exchanges\": {\"count\": 2,\n"
        "    \"step\": [1, 1],\n"
        "    \"micro_batch\": [0, 0],\n"
        "    \"moe_layer\": [0, 1],\n"
        "    \"replica\": [1, 1],\n"
        "    \"time_us\": [30, 50],\n"
        "    \"alltoall_us\": [10, 40],\n"
        "    \"expert_max_over_mean\": [3, 3],\n"
        "    \"gpu_max_over_mean\": [1.5, 1.5],\n"
        "    \"straggler_gpu\": [2, 3],\n"
        "    \"straggler_rows\": [9, 5],\n"
        "    \"straggler_rows_over_mean\": [1.5, 0.833333333],\n"
        "    \"straggler_expert\": [5, 7],\n"
        "    \"straggler_expert_rows\": [8, 4]}");

  std::ostringstream table;
  print_slowest_exchanges(table, e);
  const std::string text = table.str();
  CHECK_THAT(text, Catch::Contains("most rows of its replica in 3 of 4 exchanges"));
  // Header, then B, C, A, D: the four exchanges are fewer than kSlowestExchangesShown.
  CHECK_THAT(text, Catch::Contains("step/mb/layer/replica  time us  all-to-all us"));
  const auto b = text.find("1/0/1/1");
  const auto c = text.find("2/0/0/1");
  const auto a = text.find("1/0/0/1");
  const auto d = text.find("2/0/1/1");
  REQUIRE(b != std::string::npos);
  CHECK(b < c);
  CHECK(c < a);
  CHECK(a < d);
  CHECK_THAT(text, Catch::Contains("1/0/1/1                   50.0           40.0"));

  std::ostringstream none;
  print_slowest_exchanges(none, {});
  CHECK(none.str().empty());
}

}  // namespace
}  // namespace moesim
