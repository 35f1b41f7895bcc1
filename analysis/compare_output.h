// What `moesim compare` prints: the verdict, the ranked tables, JSON and CSV of a comparison
// that sim/compare.h computed.
#pragma once

#include <ostream>
#include <span>
#include <string>

#include "scenarios/scenario.h"
#include "sim/compare.h"

namespace moesim {

// "fastest: <cluster> <plan>, p50 X ms, N.NNx faster than the next plan that fits ..." .
std::string compare_verdict(std::span<const ClusterComparison> comparisons);

// Ranked tables (one per cluster, side by side in one table when several), JSON, or CSV.
void print_compare_table(std::ostream& out, const Scenario& scenario,
                         std::span<const ClusterComparison> comparisons);
void write_compare_json(std::ostream& out, const Scenario& scenario,
                        std::span<const ClusterComparison> comparisons);
void write_compare_csv(std::ostream& out, std::span<const ClusterComparison> comparisons);

}  // namespace moesim
