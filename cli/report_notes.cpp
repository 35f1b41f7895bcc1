#include "cli/report_notes.h"

#include <iostream>

namespace moesim::cli {

void announce_report(std::string_view command, const ReportOutput& report) {
  for (const std::string& w : report.warnings) {
    std::cerr << "moesim " << command << ": gnuplot: " << w << "\n";
  }
  std::cerr << "report: " << report.index_html.string() << "\n";
}

void write_and_announce_run_report(std::string_view command, const std::filesystem::path& dir,
                                   const Scenario& scenario, const SimulationResult& result) {
  announce_report(command, write_run_report(dir, scenario, result));
}

}  // namespace moesim::cli
