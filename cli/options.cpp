#include "cli/options.h"

#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

namespace moesim::cli {

namespace po = boost::program_options;

bool parse_command_line(int argc, char** argv, const po::options_description& visible,
                        const po::options_description& hidden,
                        const po::positional_options_description& positional,
                        po::variables_map& vm) {
  po::options_description all;
  all.add(visible).add(hidden);
  po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
  if (vm.count("help")) {
    std::cout << visible << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

bool parse_with_scenario(int argc, char** argv, const po::options_description& visible,
                         std::string& scenario_path, po::variables_map& vm) {
  po::options_description hidden;
  hidden.add_options()("scenario", po::value(&scenario_path));
  po::positional_options_description positional;
  positional.add("scenario", 1);
  return parse_command_line(argc, argv, visible, hidden, positional, vm);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace moesim::cli
