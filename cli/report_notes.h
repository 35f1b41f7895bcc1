// What the commands print on stderr after writing an HTML report (`--report DIR`): gnuplot's
// warnings, then where the report is. One path for run, replay, sweep and compare.
#pragma once

#include <filesystem>
#include <string_view>

#include "analysis/html_report.h"
#include "scenarios/scenario.h"
#include "sim/simulation.h"

namespace moesim::cli {

// Prints each of report.warnings as "moesim COMMAND: gnuplot: WARNING" and then
// "report: INDEX_HTML", on stderr.
void announce_report(std::string_view command, const ReportOutput& report);

// write_run_report into `dir`, then announce_report: `moesim run` and `moesim replay`.
void write_and_announce_run_report(std::string_view command, const std::filesystem::path& dir,
                                   const Scenario& scenario, const SimulationResult& result);

}  // namespace moesim::cli
