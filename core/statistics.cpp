#include "core/statistics.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace moesim {
namespace {

void require_finite(double value, const char* where) {
  if (!std::isfinite(value)) {
    throw std::invalid_argument(std::string(where) + ": sample " + std::to_string(value) +
                                " is not a finite number");
  }
}

}  // namespace

void SampleSet::add(double value) {
  require_finite(value, "SampleSet::add");
  values_.push_back(value);
  sorted_valid_ = false;
  const double delta = value - running_mean_;
  running_mean_ += delta / static_cast<double>(values_.size());
  sum_squared_deviations_ += delta * (value - running_mean_);
}

void SampleSet::add(std::span<const double> values) {
  for (double v : values) add(v);
}

void SampleSet::require_samples(const char* what) const {
  if (values_.empty()) {
    throw std::logic_error(std::string("SampleSet::") + what + " of an empty sample set");
  }
}

double SampleSet::mean() const {
  require_samples("mean");
  return running_mean_;
}

double SampleSet::stddev() const {
  if (values_.size() < 2) {
    throw std::logic_error("SampleSet::stddev needs at least two samples, has " +
                           std::to_string(values_.size()));
  }
  return std::sqrt(sum_squared_deviations_ / static_cast<double>(values_.size() - 1));
}

std::span<const double> SampleSet::sorted() const {
  if (!sorted_valid_) {
    sorted_ = values_;
    std::sort(sorted_.begin(), sorted_.end());
    sorted_valid_ = true;
  }
  return sorted_;
}

double SampleSet::min() const {
  require_samples("min");
  return sorted().front();
}

double SampleSet::max() const {
  require_samples("max");
  return sorted().back();
}

double SampleSet::percentile(double p) const {
  require_samples("percentile");
  if (!(p >= 0.0 && p <= 100.0)) {
    throw std::invalid_argument("SampleSet::percentile: p = " + std::to_string(p) +
                                " is outside [0, 100]");
  }
  const std::span<const double> x = sorted();
  const double rank = static_cast<double>(x.size() - 1) * p / 100.0;
  const auto below = static_cast<size_t>(std::floor(rank));
  if (below + 1 >= x.size()) return x.back();
  const double fraction = rank - static_cast<double>(below);
  return x[below] + fraction * (x[below + 1] - x[below]);
}

Summary SampleSet::summary() const {
  require_samples("summary");
  Summary s;
  s.count = size();
  s.mean = mean();
  if (size() >= 2) s.stddev = stddev();
  s.min = min();
  s.max = max();
  s.p50 = p50();
  s.p99 = p99();
  return s;
}

Histogram::Histogram(double lo, double hi, size_t bins) : lo_(lo), hi_(hi), counts_(bins, 0) {
  if (!(std::isfinite(lo) && std::isfinite(hi) && lo < hi)) {
    throw std::invalid_argument("Histogram: need finite lo < hi, got [" + std::to_string(lo) +
                                ", " + std::to_string(hi) + "]");
  }
  if (bins == 0) throw std::invalid_argument("Histogram: need at least one bin");
}

void Histogram::add(double value) {
  if (std::isnan(value)) throw std::invalid_argument("Histogram::add: sample is NaN");
  ++total_;
  if (value < lo_) {
    ++underflow_;
    return;
  }
  if (value > hi_) {
    ++overflow_;
    return;
  }
  const double position = (value - lo_) / (hi_ - lo_) * static_cast<double>(counts_.size());
  // hi itself, and values a rounding error below it, belong to the last bin.
  const auto bin = std::min(static_cast<size_t>(position), counts_.size() - 1);
  ++counts_[bin];
}

void Histogram::add(std::span<const double> values) {
  for (double v : values) add(v);
}

double Histogram::bin_lo(size_t bin) const {
  if (bin >= counts_.size()) throw std::out_of_range("Histogram::bin_lo: no such bin");
  return lo_ + (hi_ - lo_) * static_cast<double>(bin) / static_cast<double>(counts_.size());
}

double Histogram::bin_hi(size_t bin) const {
  if (bin >= counts_.size()) throw std::out_of_range("Histogram::bin_hi: no such bin");
  if (bin + 1 == counts_.size()) return hi_;
  return bin_lo(bin + 1);
}

std::vector<CdfPoint> empirical_cdf(std::span<const double> values) {
  std::vector<double> sorted(values.begin(), values.end());
  for (double v : sorted) {
    if (std::isnan(v)) throw std::invalid_argument("empirical_cdf: sample is NaN");
  }
  std::sort(sorted.begin(), sorted.end());
  std::vector<CdfPoint> cdf;
  const auto n = static_cast<double>(sorted.size());
  for (size_t i = 0; i < sorted.size(); ++i) {
    // One point per distinct value, at the last of its copies.
    if (i + 1 < sorted.size() && sorted[i + 1] == sorted[i]) continue;
    cdf.push_back(CdfPoint{sorted[i], static_cast<double>(i + 1) / n});
  }
  return cdf;
}

}  // namespace moesim
