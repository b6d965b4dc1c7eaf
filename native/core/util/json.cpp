#include "util/json.h"

#include <cmath>

#include "util/input_file.h"

namespace ovam {

namespace {
// Python's json module writes bare Infinity / -Infinity / NaN (diffusers configs do, e.g.
// lambda_min_clipped); strict JSON parsers reject them, so they become strings outside literals.
std::string quote_python_constants(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) out += text[++i];
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    bool replaced = false;
    for (const char* word : {"-Infinity", "Infinity", "NaN"}) {
      const size_t n = std::char_traits<char>::length(word);
      if (text.compare(i, n, word) == 0) {
        out += '"' + std::string(word) + '"';
        i += n - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}
}  // namespace

Json read_json_file(const std::string& path) {
  Json json = Json::parse(quote_python_constants(read_regular_file(path, uint64_t(64) << 20)), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) throw Error(code::kConfig, path + ": not valid JSON");
  if (!json.is_object()) throw Error(code::kConfig, path + ": expected a JSON object at the top level");
  return json;
}

void Config::reject(const std::string& key, const std::string& why) const {
  std::string value = json_.contains(key) ? json_[key].dump() : "(missing)";
  throw Error(code::kConfig, file_ + ": key \"" + key + "\" = " + value + ": " + why);
}

int64_t Config::to_int(const std::string& key, const Json& v, int64_t min, int64_t max) const {
  const std::string accepted = "expected an integer from " + std::to_string(min) + " to " + std::to_string(max);
  if (v.is_number_unsigned()) {  // nlohmann keeps every non-negative integer here, 0 included
    if (v.get<uint64_t>() > uint64_t(max) || int64_t(v.get<uint64_t>()) < min) reject(key, accepted);
  } else if (v.is_number_integer()) {
    if (v.get<int64_t>() < min || v.get<int64_t>() > max) reject(key, accepted);
  } else if (v.is_number_float()) {
    // Compared as doubles first: converting one outside int64's range is undefined.
    const double d = v.get<double>();
    if (!(d >= double(min) && d <= double(max)) || d != std::floor(d)) reject(key, accepted);
    return int64_t(d);
  } else {
    reject(key, accepted);
  }
  return v.get<int64_t>();
}

int64_t Config::get_int(const std::string& key, int64_t fallback, int64_t min, int64_t max) const {
  if (!has(key)) return fallback;
  return to_int(key, json_[key], min, max);
}

double Config::get_double(const std::string& key, double fallback) const {
  if (!has(key)) return fallback;
  const Json& v = json_[key];
  if (!v.is_number()) reject(key, "expected a number");
  return v.get<double>();
}

bool Config::get_bool(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const Json& v = json_[key];
  if (!v.is_boolean()) reject(key, "expected true or false");
  return v.get<bool>();
}

std::string Config::get_string(const std::string& key, const std::string& fallback) const {
  if (!has(key)) return fallback;
  const Json& v = json_[key];
  if (!v.is_string()) reject(key, "expected a string");
  return v.get<std::string>();
}

std::vector<int64_t> Config::get_ints(const std::string& key, const std::vector<int64_t>& fallback, int64_t min, int64_t max) const {
  if (!has(key)) return fallback;
  const Json& v = json_[key];
  if (!v.is_array()) reject(key, "expected a list of numbers");
  if (v.size() > 64) reject(key, "expected at most 64 entries");
  std::vector<int64_t> out;
  for (const auto& x : v) out.push_back(to_int(key, x, min, max));
  return out;
}

std::vector<std::string> Config::get_strings(const std::string& key, const std::vector<std::string>& fallback) const {
  if (!has(key)) return fallback;
  const Json& v = json_[key];
  if (!v.is_array()) reject(key, "expected a list of strings");
  std::vector<std::string> out;
  for (const auto& x : v) {
    if (!x.is_string()) reject(key, "expected a list of strings");
    out.push_back(x.get<std::string>());
  }
  return out;
}

std::vector<int64_t> Config::get_int_or_ints(const std::string& key, int64_t fallback, size_t count, int64_t min, int64_t max) const {
  if (!has(key)) return std::vector<int64_t>(count, fallback);
  if (json_[key].is_number()) return std::vector<int64_t>(count, to_int(key, json_[key], min, max));
  auto values = get_ints(key, {}, min, max);
  if (values.size() != count) reject(key, "expected one value per block (" + std::to_string(count) + ")");
  return values;
}

void Config::require_one_of(const std::string& key, const std::string& value,
                            const std::vector<std::string>& accepted) const {
  for (const auto& a : accepted)
    if (a == value) return;
  std::string list;
  for (const auto& a : accepted) list += (list.empty() ? "" : ", ") + a;
  throw Error(code::kConfig, file_ + ": key \"" + key + "\" = \"" + value + "\" is not implemented; accepted: " + list);
}

}  // namespace ovam
