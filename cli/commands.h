// The moesim sub-commands. Each lives in its own cli/<name>.cpp and parses its own options
// with Boost.Program_options; main.cpp only dispatches.
#pragma once

namespace moesim::cli {

// Every command takes the arguments after its name (argv[0] is the command's name) and returns
// the process exit code.
int run_command(int argc, char** argv);
int compare_command(int argc, char** argv);
int sweep_command(int argc, char** argv);
int merge_command(int argc, char** argv);
int record_command(int argc, char** argv);
int replay_command(int argc, char** argv);
int import_command(int argc, char** argv);
int fit_command(int argc, char** argv);
int moe_collective_command(int argc, char** argv);
int collective_command(int argc, char** argv);

}  // namespace moesim::cli
