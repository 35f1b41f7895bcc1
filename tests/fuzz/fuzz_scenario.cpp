// libFuzzer target: arbitrary bytes as a scenario file, parsed, resolved and validated, and the
// first sweep points resolved as `moesim sweep` would. Any outcome but a scenario or a
// ScenarioError (a crash, another exception, a sanitizer report, a hang) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "scenarios/scenario.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const moesim::Scenario s = moesim::parse_scenario(text, "fuzz.pbtxt");
    // Up to 4 points of the sweep's cross product: the first value of every axis but one.
    for (size_t varied = 0; varied < s.sweep.size() && varied < 4; ++varied) {
      std::vector<std::pair<std::string, std::string>> point;
      for (size_t a = 0; a < s.sweep.size(); ++a) {
        const auto& values = s.sweep[a].values;
        point.emplace_back(s.sweep[a].name, a == varied ? values.back() : values.front());
      }
      moesim::parse_scenario_at(text, "fuzz.pbtxt", point);
    }
  } catch (const moesim::ScenarioError&) {
  }
  return 0;
}
