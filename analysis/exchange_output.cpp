#include "analysis/exchange_output.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <numeric>
#include <sstream>
#include <string>

#include "analysis/json_text.h"
#include "analysis/text_format.h"

namespace moesim {
namespace {

// The fields the table joins into its first column ("step/mb/layer/replica"), then the others
// one column each, with their decimals (-1: an integer).
constexpr ExchangeField kWhere[] = {ExchangeField::kStep, ExchangeField::kMicroBatch,
                                    ExchangeField::kMoeLayer, ExchangeField::kReplica};
struct Column {
  ExchangeField field;
  int digits;
};
constexpr Column kColumns[] = {{ExchangeField::kTimeUs, 1},
                               {ExchangeField::kAllToAllUs, 1},
                               {ExchangeField::kExpertMaxOverMean, 3},
                               {ExchangeField::kGpuMaxOverMean, 3},
                               {ExchangeField::kStragglerGpu, -1},
                               {ExchangeField::kStragglerRows, -1},
                               {ExchangeField::kStragglerRowsOverMean, 3},
                               {ExchangeField::kStragglerExpert, -1},
                               {ExchangeField::kStragglerExpertRows, -1}};

std::string cell(double value, int digits) {
  if (digits < 0) return std::to_string(std::llround(value));
  return fixed(value, digits);
}

}  // namespace

const ExchangeFieldName& exchange_field_name(ExchangeField field) {
  return kExchangeFields[static_cast<size_t>(field)];
}

double exchange_field(const ExchangeRecord& r, ExchangeField field) {
  const ExchangeStraggler& s = r.straggler;
  switch (field) {
    case ExchangeField::kStep:
      return r.step;
    case ExchangeField::kMicroBatch:
      return s.micro_batch;
    case ExchangeField::kMoeLayer:
      return s.moe_layer;
    case ExchangeField::kReplica:
      return s.replica;
    case ExchangeField::kTimeUs:
      return s.time.to_us();
    case ExchangeField::kAllToAllUs:
      return s.alltoall_time.to_us();
    case ExchangeField::kExpertMaxOverMean:
      return r.load.expert_max_over_mean;
    case ExchangeField::kGpuMaxOverMean:
      return r.load.gpu_max_over_mean;
    case ExchangeField::kStragglerGpu:
      return s.gpu;
    case ExchangeField::kStragglerRows:
      return static_cast<double>(s.rows);
    case ExchangeField::kStragglerRowsOverMean:
      return r.straggler_rows_over_mean();
    case ExchangeField::kStragglerExpert:
      return s.hottest_expert;
    case ExchangeField::kStragglerExpertRows:
      return static_cast<double>(s.hottest_expert_rows);
  }
  return 0.0;
}

std::vector<size_t> slowest_exchanges(std::span<const ExchangeRecord> exchanges, size_t count) {
  std::vector<size_t> order(exchanges.size());
  std::iota(order.begin(), order.end(), size_t{0});
  const size_t shown = std::min(count, order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(shown), order.end(),
                    [&](size_t a, size_t b) {
                      const Time ta = exchanges[a].straggler.time;
                      const Time tb = exchanges[b].straggler.time;
                      return ta != tb ? ta > tb : a < b;
                    });
  order.resize(shown);
  return order;
}

size_t straggler_was_busiest(std::span<const ExchangeRecord> exchanges) {
  return static_cast<size_t>(std::count_if(
      exchanges.begin(), exchanges.end(),
      [](const ExchangeRecord& r) { return r.straggler.rows == r.load.busiest_gpu_rows; }));
}

void write_exchanges_json(std::ostream& out, std::span<const ExchangeRecord> exchanges) {
  out << "  \"exchanges\": {\"count\": " << exchanges.size();
  for (size_t f = 0; f < kExchangeFieldCount; ++f) {
    out << ",\n    \"" << kExchangeFields[f].key << "\": [";
    for (size_t i = 0; i < exchanges.size(); ++i) {
      out << (i ? ", " : "") << json_number(exchange_field(exchanges[i], ExchangeField(f)));
    }
    out << "]";
  }
  out << "}";
}

void print_slowest_exchanges(std::ostream& out, std::span<const ExchangeRecord> exchanges) {
  if (exchanges.empty()) return;
  out << "\n  stragglers: the last GPU at the combine computed the most rows of its replica in "
      << straggler_was_busiest(exchanges) << " of " << exchanges.size() << " exchanges\n";
  std::string where_label;
  for (ExchangeField f : kWhere) {
    where_label += (where_label.empty() ? "" : "/") + std::string(exchange_field_name(f).label);
  }
  const std::vector<size_t> slowest = slowest_exchanges(exchanges, kSlowestExchangesShown);
  // Cells first, so that each column is as wide as its widest cell or label.
  std::vector<std::vector<std::string>> rows;
  for (size_t i : slowest) {
    std::string where;
    for (ExchangeField f : kWhere) {
      where += (where.empty() ? "" : "/") + cell(exchange_field(exchanges[i], f), -1);
    }
    std::vector<std::string> row = {where};
    for (const Column& c : kColumns)
      row.push_back(cell(exchange_field(exchanges[i], c.field), c.digits));
    rows.push_back(std::move(row));
  }
  std::vector<std::string> header = {where_label};
  for (const Column& c : kColumns) header.emplace_back(exchange_field_name(c.field).label);
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    width[c] = header[c].size();
    for (const auto& row : rows) width[c] = std::max(width[c], row[c].size());
  }
  out << "  slowest exchanges (time: dispatch start to combine end; last GPU: the combine's last "
         "arrival)\n";
  auto line = [&](const std::vector<std::string>& cells) {
    out << "  " << std::left << std::setw(static_cast<int>(width[0])) << cells[0] << std::right;
    for (size_t c = 1; c < cells.size(); ++c) {
      out << "  " << std::setw(static_cast<int>(width[c])) << cells[c];
    }
    out << "\n";
  };
  line(header);
  for (const auto& row : rows) line(row);
}

}  // namespace moesim
