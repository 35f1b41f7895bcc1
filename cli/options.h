// Command-line parsing shared by the sub-commands: visible options plus positional arguments
// (declared as hidden options), with --help printing the visible ones.
#pragma once

#include <boost/program_options.hpp>
#include <string>

namespace moesim::cli {

// Stores argv in `vm` and notifies it. Returns false, having printed `visible` to stdout, when
// --help was given (the caller then exits 0).
bool parse_command_line(int argc, char** argv,
                        const boost::program_options::options_description& visible,
                        const boost::program_options::options_description& hidden,
                        const boost::program_options::positional_options_description& positional,
                        boost::program_options::variables_map& vm);

// The common case: `visible` plus one positional SCENARIO stored in `scenario_path`.
bool parse_with_scenario(int argc, char** argv,
                         const boost::program_options::options_description& visible,
                         std::string& scenario_path, boost::program_options::variables_map& vm);

// The whole file at `path`; throws std::runtime_error naming it when it cannot be read.
std::string read_text_file(const std::string& path);

}  // namespace moesim::cli
