// Entry point of the `moesim` command: dispatches to a sub-command and turns exceptions into
// a one-line error and a non-zero exit.

#include <cstring>
#include <exception>
#include <iostream>
#include <string_view>

#include "cli/commands.h"
#include "models/router/blas_kernels.h"

namespace {

struct Command {
  std::string_view name;
  int (*entry)(int, char**);
  std::string_view summary;
};

constexpr Command kCommands[] = {
    {"run", moesim::cli::run_command, "simulate a scenario (default scenario if none given)"},
    {"compare", moesim::cli::compare_command, "rank TP/EP/DP plans on one or more clusters"},
    {"sweep", moesim::cli::sweep_command, "run a scenario's sweep axes, one CSV row per point"},
    {"merge", moesim::cli::merge_command, "join sweep shard CSVs into one, checking for gaps"},
    {"record", moesim::cli::record_command, "write a scenario's routing decisions as a trace"},
    {"replay", moesim::cli::replay_command, "simulate a scenario with a routing trace"},
    {"import", moesim::cli::import_command, "convert a CSV, JSONL or .npy routing log to a trace"},
    {"fit", moesim::cli::fit_command, "fit the synthetic token model to a routing trace or log"},
    {"collective", moesim::cli::collective_command, "time a collective over message sizes"},
    {"moe-collective", moesim::cli::moe_collective_command,
     "one DeepEP-style MoE dispatch or combine phase, DeepEP's bandwidth figures"},
};

void print_usage(std::ostream& out) {
  out << "usage: moesim <command> [options]\n\ncommands:\n";
  for (const Command& c : kCommands) {
    out << "  " << c.name << std::string(c.name.size() < 12 ? 12 - c.name.size() : 1, ' ')
        << c.summary << "\n";
  }
  out << "\n`moesim <command> --help` describes a command's options.\n";
}

}  // namespace

int main(int argc, char** argv) {
  moesim::reexec_with_fitter_blas_core(argv);
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    print_usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  const std::string_view name = argv[1];
  // moesim runs routing tasks on its own threads; BLAS threads on top of them would only
  // contend for the same cores (and spin), and would change results with the core count.
  moesim::run_gemms_on_calling_thread();
  for (const Command& c : kCommands) {
    if (c.name == name) {
      try {
        return c.entry(argc - 1, argv + 1);
      } catch (const std::exception& e) {
        std::cerr << "moesim " << name << ": error: " << e.what() << "\n";
        return 1;
      }
    }
  }
  std::cerr << "moesim: unknown command '" << name << "'\n\n";
  print_usage(std::cerr);
  return 2;
}
