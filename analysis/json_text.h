// Text pieces of the JSON documents moesim writes by hand (run, compare): a quoted, escaped
// string, so every writer escapes the same way.
#pragma once

#include <string>
#include <string_view>

namespace moesim {

// `s` as a JSON string literal: quotes and backslashes escaped, control characters as \uXXXX.
std::string json_string(std::string_view s);

}  // namespace moesim
