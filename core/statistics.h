// Descriptive statistics of simulated quantities (phase times, loads): mean, sample standard
// deviation, percentiles, fixed-bin histograms and empirical CDFs, for reports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace moesim {

// The summary a report prints for one quantity.
struct Summary {
  size_t count = 0;
  double mean = 0.0;
  std::optional<double> stddev;  // sample (n - 1) standard deviation; absent for one sample
  double min = 0.0;
  double max = 0.0;
  double p50 = 0.0;
  double p99 = 0.0;
};

// A set of samples. Mean and variance are kept by Welford's method as samples arrive; order
// statistics sort a copy on first use. Accessors on an empty set throw std::logic_error, and
// NaN or infinite samples throw std::invalid_argument. Not for concurrent use of one object.
class SampleSet {
 public:
  SampleSet() = default;
  explicit SampleSet(std::span<const double> values) { add(values); }

  void add(double value);
  void add(std::span<const double> values);

  size_t size() const { return values_.size(); }
  bool empty() const { return values_.empty(); }

  double mean() const;
  // Sample standard deviation, dividing by n - 1; throws std::logic_error with fewer than two.
  double stddev() const;
  double min() const;
  double max() const;
  // The p-th percentile, p in [0, 100], by linear interpolation between closest ranks (numpy's
  // default "linear" method, Hyndman & Fan type 7): at rank h = (n - 1) p / 100 of the sorted
  // samples x[0..n-1], x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h]).
  double percentile(double p) const;
  double p50() const { return percentile(50.0); }
  double p99() const { return percentile(99.0); }
  Summary summary() const;

  // The samples in ascending order.
  std::span<const double> sorted() const;
  // The samples in the order they were added.
  std::span<const double> values() const { return values_; }

 private:
  void require_samples(const char* what) const;

  std::vector<double> values_;
  double running_mean_ = 0.0;
  double sum_squared_deviations_ = 0.0;  // Welford's M2
  mutable std::vector<double> sorted_;
  mutable bool sorted_valid_ = false;
};

// Counts of samples in `bins` equal-width bins over [lo, hi]. Bin i covers
// [lo + i w, lo + (i + 1) w) with w = (hi - lo) / bins; the last bin also holds hi itself.
// Samples outside [lo, hi] are counted as underflow or overflow, never dropped.
class Histogram {
 public:
  // Throws std::invalid_argument unless lo < hi (both finite) and bins >= 1.
  Histogram(double lo, double hi, size_t bins);

  void add(double value);  // NaN throws std::invalid_argument
  void add(std::span<const double> values);

  size_t bin_count() const { return counts_.size(); }
  double lo() const { return lo_; }
  double hi() const { return hi_; }
  double bin_lo(size_t bin) const;
  double bin_hi(size_t bin) const;
  std::span<const uint64_t> counts() const { return counts_; }
  uint64_t underflow() const { return underflow_; }
  uint64_t overflow() const { return overflow_; }
  // Every sample added, inside the range or not.
  uint64_t total() const { return total_; }

 private:
  double lo_;
  double hi_;
  std::vector<uint64_t> counts_;
  uint64_t underflow_ = 0;
  uint64_t overflow_ = 0;
  uint64_t total_ = 0;
};

// One step of an empirical CDF: the fraction of samples <= value.
struct CdfPoint {
  double value;
  double fraction;
  friend bool operator==(const CdfPoint&, const CdfPoint&) = default;
};

// The empirical CDF of `values`: one point per distinct value, ascending, with the fraction of
// samples at or below it (the last is 1). Empty input gives an empty CDF; NaN throws.
std::vector<CdfPoint> empirical_cdf(std::span<const double> values);

}  // namespace moesim
