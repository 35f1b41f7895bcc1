// Text pieces of the JSON documents moesim writes by hand (run, compare): a quoted, escaped
// string and a number, so every writer escapes and rounds the same way.
#pragma once

#include <string>
#include <string_view>

namespace moesim {

// `s` as a JSON string literal: quotes and backslashes escaped, control characters as \uXXXX.
std::string json_string(std::string_view s);

// `v` to nine significant digits ("%.9g"), `null` for an infinity or NaN.
std::string json_number(double v);

}  // namespace moesim
