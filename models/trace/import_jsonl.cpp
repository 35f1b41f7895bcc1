#include "models/trace/import_jsonl.h"

#include <fstream>
#include <limits>

#include "models/trace/json_line.h"

namespace moesim {

namespace {

struct LineContext {
  const std::string& name;
  int64_t line;
  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw TraceError(name + ":" + std::to_string(line) + ": field \"" + field + "\": " + what);
  }
};

int64_t get_int(const LineContext& at, const JsonField& f, int64_t lo, int64_t hi) {
  int64_t v = 0;
  if (f.value.kind != JsonValue::Kind::kNumber || !json_to_int64(f.value.number, v)) {
    at.fail(f.key, "expected an integer");
  }
  if (v < lo || v > hi) {
    at.fail(f.key, std::to_string(v) + " is outside [" + std::to_string(lo) + ", " +
                       std::to_string(hi) + "]");
  }
  return v;
}

const JsonValue& get_number_array(const LineContext& at, const JsonField& f) {
  if (f.value.kind != JsonValue::Kind::kArray || !f.value.array_of_numbers) {
    at.fail(f.key, "expected an array of numbers");
  }
  return f.value;
}

struct LayerState {
  std::vector<int32_t> ids;
  std::vector<float> weights;
  std::vector<int64_t> batch_tokens;
  int64_t last_batch = -1;
};

}  // namespace

ImportedRouting read_jsonl(std::istream& in, const std::string& name) {
  ImportedRouting out;
  out.input = name;
  std::vector<LayerState> layers;
  std::vector<JsonField> fields;
  std::string text;
  int64_t line = 0;
  int64_t top_k_line = 0;
  int weights_mode = -1;  // -1 unknown, 0 none, 1 all rows
  int batch_mode = -1;
  bool meta_seen = false;
  while (std::getline(in, text)) {
    ++line;
    const LineContext at{name, line};
    if (text.empty() || text == "\r") {
      throw TraceError(name + ":" + std::to_string(line) + ": empty line");
    }
    try {
      parse_json_object(text, fields);
    } catch (const JsonSyntaxError& e) {
      throw TraceError(name + ":" + std::to_string(line) + ": " + e.what());
    }
    const JsonField* type = nullptr;
    for (const JsonField& f : fields) {
      if (f.key == "type") type = &f;
    }
    if (type != nullptr && type->value.kind != JsonValue::Kind::kString) {
      at.fail("type", "expected a string");
    }
    if (type != nullptr && type->value.string == "meta") {
      if (line != 1 || meta_seen) at.fail("type", "a meta line may only be the first line");
      meta_seen = true;
      for (const JsonField& f : fields) {
        if (f.key == "top_k") {
          out.top_k = static_cast<int32_t>(get_int(at, f, 1, std::numeric_limits<int32_t>::max()));
          top_k_line = line;
        } else if (f.key == "num_experts") {
          out.experts =
              static_cast<int32_t>(get_int(at, f, 1, std::numeric_limits<int32_t>::max()));
        } else if (f.key != "type" && f.value.kind == JsonValue::Kind::kString) {
          out.source += (out.source.empty() ? "" : ", ") + f.key + "=" + f.value.string;
        }
      }
      continue;
    }
    if (type != nullptr && type->value.string != "route") {
      at.fail("type", "expected \"meta\" or \"route\", got \"" + type->value.string + "\"");
    }
    const JsonField* layer_f = nullptr;
    const JsonField* token_f = nullptr;
    const JsonField* ids_f = nullptr;
    const JsonField* weights_f = nullptr;
    const JsonField* batch_f = nullptr;
    for (const JsonField& f : fields) {
      if (f.key == "layer") {
        layer_f = &f;
      } else if (f.key == "token" || f.key == "token_idx") {
        if (token_f != nullptr) at.fail(f.key, "both \"token\" and \"token_idx\" given");
        token_f = &f;
      } else if (f.key == "topk_ids") {
        ids_f = &f;
      } else if (f.key == "topk_weights") {
        weights_f = &f;
      } else if (f.key == "batch") {
        batch_f = &f;
      } else if (f.key == "req_id") {
        if (f.value.kind != JsonValue::Kind::kString && f.value.kind != JsonValue::Kind::kNumber) {
          at.fail(f.key, "expected a string or a number");
        }
      } else if (f.key != "type") {
        at.fail(f.key,
                "unknown field (expected layer, token or token_idx, topk_ids, "
                "topk_weights, batch, req_id, type)");
      }
    }
    if (layer_f == nullptr) at.fail("layer", "missing");
    if (token_f == nullptr) at.fail("token_idx", "missing (\"token\" or \"token_idx\")");
    if (ids_f == nullptr) at.fail("topk_ids", "missing");
    const auto layer = get_int(at, *layer_f, 0, int64_t{kTraceMaxLayers} - 1);
    get_int(at, *token_f, 0, std::numeric_limits<int64_t>::max());
    const JsonValue& ids = get_number_array(at, *ids_f);
    if (out.top_k == 0) {
      if (ids.numbers.empty()) at.fail("topk_ids", "empty");
      out.top_k = static_cast<int32_t>(ids.numbers.size());
      top_k_line = line;
    }
    if (ids.numbers.size() != static_cast<size_t>(out.top_k)) {
      at.fail("topk_ids", std::to_string(ids.numbers.size()) + " ids, but top_k is " +
                              std::to_string(out.top_k) + " (from line " +
                              std::to_string(top_k_line) + ")");
    }
    if (weights_mode == -1) weights_mode = weights_f != nullptr ? 1 : 0;
    if ((weights_f != nullptr) != (weights_mode == 1)) {
      at.fail("topk_weights", weights_mode == 1 ? "missing, earlier rows have weights"
                                                : "present, earlier rows have none");
    }
    if (batch_mode == -1) batch_mode = batch_f != nullptr ? 1 : 0;
    if ((batch_f != nullptr) != (batch_mode == 1)) {
      at.fail("batch", batch_mode == 1 ? "missing, earlier rows have it"
                                       : "present, earlier rows have none");
    }
    if (layer >= static_cast<int64_t>(layers.size())) layers.resize(layer + 1);
    LayerState& ls = layers[layer];
    for (std::string_view lit : ids.numbers) {
      int64_t id = 0;
      if (!json_to_int64(lit, id) || id < 0 || id > std::numeric_limits<int32_t>::max()) {
        at.fail("topk_ids", "\"" + std::string(lit) + "\" is not an expert id (integer >= 0)");
      }
      if (out.experts > 0 && id >= out.experts) {
        at.fail("topk_ids", "expert id " + std::to_string(id) + " is out of range [0, " +
                                std::to_string(out.experts) + ") (num_experts of the meta line)");
      }
      ls.ids.push_back(static_cast<int32_t>(id));
    }
    if (weights_f != nullptr) {
      const JsonValue& w = get_number_array(at, *weights_f);
      if (w.numbers.size() != ids.numbers.size()) {
        at.fail("topk_weights", std::to_string(w.numbers.size()) + " weights for " +
                                    std::to_string(ids.numbers.size()) + " ids");
      }
      for (std::string_view lit : w.numbers) {
        float v = 0;
        if (!json_to_float(lit, v))
          at.fail("topk_weights", "\"" + std::string(lit) + "\" is not a float");
        ls.weights.push_back(v);
      }
    }
    if (batch_f != nullptr) {
      const int64_t b = get_int(at, *batch_f, 0, std::numeric_limits<int64_t>::max());
      if (b < ls.last_batch) {
        at.fail("batch", std::to_string(b) + " after batch " + std::to_string(ls.last_batch) +
                             " in layer " + std::to_string(layer) +
                             " (batches must not decrease within a layer)");
      }
      if (b != ls.last_batch) ls.batch_tokens.push_back(0);
      ++ls.batch_tokens.back();
      ls.last_batch = b;
    }
  }
  if (in.bad()) throw TraceError(name + ": read failed");
  if (layers.empty()) throw TraceError(name + ": no route rows");
  for (size_t l = 0; l < layers.size(); ++l) {
    if (layers[l].ids.empty()) {
      throw TraceError(name + ": layer " + std::to_string(l) + " has no rows; layers must be 0.." +
                       std::to_string(layers.size() - 1) + ", all present");
    }
    if (batch_mode == 1 && layers[l].batch_tokens != layers[0].batch_tokens) {
      throw TraceError(name + ": layer " + std::to_string(l) +
                       "'s batches hold other token counts than layer 0's");
    }
  }
  if (batch_mode == 1) out.batch_tokens = layers[0].batch_tokens;
  for (LayerState& ls : layers) {
    out.expert_ids.push_back(std::move(ls.ids));
    out.weights.push_back(std::move(ls.weights));
  }
  return out;
}

ImportResult import_jsonl(const std::filesystem::path& jsonl, const ImportOptions& options,
                          const std::filesystem::path& trace) {
  std::ifstream in(jsonl);
  if (!in) throw TraceError(jsonl.string() + ": cannot open for reading");
  return write_imported(read_jsonl(in, jsonl.string()), options, trace);
}

}  // namespace moesim
