// A small strict parser for one JSON Lines row: a flat object whose values are numbers,
// strings, booleans, null, arrays of numbers, or nested values that are checked and skipped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace moesim {

struct JsonValue {
  enum class Kind { kNumber, kString, kBool, kNull, kArray, kObject };
  Kind kind = Kind::kNull;
  std::string_view number;                // kNumber: the literal as written, parsed on demand
  std::string string;                     // kString: decoded
  bool boolean = false;                   // kBool
  std::vector<std::string_view> numbers;  // kArray of numbers only: each literal
  bool array_of_numbers = true;           // kArray: false when an element is not a number
};

struct JsonField {
  std::string key;
  JsonValue value;
};

// A syntax error at `column` (1-based byte position in the line).
class JsonSyntaxError : public std::runtime_error {
 public:
  JsonSyntaxError(size_t column, const std::string& what)
      : std::runtime_error("column " + std::to_string(column) + ": " + what), column_(column) {}
  size_t column() const { return column_; }

 private:
  size_t column_;
};

// Parses `line` (exactly one object, surrounding whitespace allowed) into `fields`, in order,
// reusing its capacity. Throws JsonSyntaxError; a duplicate key is an error too. The views in
// the result point into `line`.
void parse_json_object(std::string_view line, std::vector<JsonField>& fields);

// Strict conversions of a number literal; false when it is not one of these.
bool json_to_int64(std::string_view literal, int64_t& out);
bool json_to_float(std::string_view literal, float& out);

}  // namespace moesim
