// The moesim sub-commands. Each lives in its own cli/<name>.cpp and parses its own options
// with Boost.Program_options; main.cpp only dispatches.
#pragma once

namespace moesim::cli {

// Every command takes the arguments after its name (argv[0] is the command's name) and returns
// the process exit code.
int run_command(int argc, char** argv);

}  // namespace moesim::cli
