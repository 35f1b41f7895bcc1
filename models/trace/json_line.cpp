#include "models/trace/json_line.h"

#include <charconv>

namespace moesim {

namespace {

// Nesting deeper than this is not a routing log; the limit keeps recursion bounded on any input.
constexpr int kMaxDepth = 32;

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  void object(std::vector<JsonField>& fields) {
    fields.clear();
    skip_space();
    expect('{');
    skip_space();
    if (peek() == '}') {
      ++pos_;
    } else {
      for (;;) {
        skip_space();
        if (peek() != '"') fail("expected a key string");
        std::string key;
        string(key);
        for (const JsonField& f : fields) {
          if (f.key == key) fail("duplicate key \"" + key + "\"");
        }
        skip_space();
        expect(':');
        fields.emplace_back();
        fields.back().key = std::move(key);
        value(fields.back().value, 1);
        skip_space();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        expect('}');
        break;
      }
    }
    skip_space();
    if (pos_ != s_.size()) fail("unexpected text after the object");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw JsonSyntaxError(pos_ + 1, what); }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  void skip_space() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r' || s_[pos_] == '\n')) {
      ++pos_;
    }
  }
  bool digit() const { return pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; }

  std::string_view number() {
    const size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (digit()) {
      while (digit()) ++pos_;
    } else {
      fail("malformed number");
    }
    if (peek() == '.') {
      ++pos_;
      if (!digit()) fail("malformed number: digits expected after '.'");
      while (digit()) ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!digit()) fail("malformed number: digits expected in the exponent");
      while (digit()) ++pos_;
    }
    return s_.substr(start, pos_ - start);
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  uint32_t hex4() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = peek();
      uint32_t d = 0;
      if (c >= '0' && c <= '9') {
        d = static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        d = static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        d = static_cast<uint32_t>(c - 'A' + 10);
      } else {
        fail("malformed \\u escape");
      }
      v = v * 16 + d;
      ++pos_;
    }
    return v;
  }

  void string(std::string& out) {
    expect('"');
    out.clear();
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      const char e = peek();
      ++pos_;
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xd800 && cp < 0xdc00 && peek() == '\\' && pos_ + 1 < s_.size() &&
              s_[pos_ + 1] == 'u') {
            pos_ += 2;
            const uint32_t low = hex4();
            if (low < 0xdc00 || low >= 0xe000) fail("malformed surrogate pair");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --pos_;
          fail("unknown escape in a string");
      }
    }
  }

  void literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) fail("unexpected character");
    pos_ += word.size();
  }

  void value(JsonValue& v, int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    skip_space();
    const char c = peek();
    v.numbers.clear();
    v.array_of_numbers = true;
    if (c == '"') {
      v.kind = JsonValue::Kind::kString;
      string(v.string);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = JsonValue::Kind::kNumber;
      v.number = number();
    } else if (c == 't') {
      literal("true");
      v.kind = JsonValue::Kind::kBool;
      v.boolean = true;
    } else if (c == 'f') {
      literal("false");
      v.kind = JsonValue::Kind::kBool;
      v.boolean = false;
    } else if (c == 'n') {
      literal("null");
      v.kind = JsonValue::Kind::kNull;
    } else if (c == '[') {
      v.kind = JsonValue::Kind::kArray;
      ++pos_;
      skip_space();
      if (peek() == ']') {
        ++pos_;
        return;
      }
      JsonValue element;
      for (;;) {
        skip_space();
        const char e = peek();
        if (e == '-' || (e >= '0' && e <= '9')) {
          v.numbers.push_back(number());
        } else {
          value(element, depth + 1);
          v.array_of_numbers = false;
        }
        skip_space();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        expect(']');
        break;
      }
      if (!v.array_of_numbers) v.numbers.clear();
    } else if (c == '{') {
      v.kind = JsonValue::Kind::kObject;
      ++pos_;
      skip_space();
      if (peek() == '}') {
        ++pos_;
        return;
      }
      JsonValue element;
      std::string key;
      for (;;) {
        skip_space();
        if (peek() != '"') fail("expected a key string");
        string(key);
        skip_space();
        expect(':');
        value(element, depth + 1);
        skip_space();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        expect('}');
        break;
      }
    } else {
      fail(pos_ >= s_.size() ? "unexpected end of line" : "unexpected character");
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

void parse_json_object(std::string_view line, std::vector<JsonField>& fields) {
  Parser(line).object(fields);
}

bool json_to_int64(std::string_view literal, int64_t& out) {
  const char* end = literal.data() + literal.size();
  const auto [ptr, ec] = std::from_chars(literal.data(), end, out);
  return ec == std::errc() && ptr == end;
}

bool json_to_float(std::string_view literal, float& out) {
  const char* end = literal.data() + literal.size();
  const auto [ptr, ec] = std::from_chars(literal.data(), end, out);
  return ec == std::errc() && ptr == end;
}

}  // namespace moesim
