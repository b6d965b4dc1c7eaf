// Reading diffusers/transformers config files: missing keys take diffusers' defaults, values we do
// not implement are rejected with the file, the key and the value.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "util/errors.h"

namespace ovam {

using Json = nlohmann::json;

// A JSON object from a regular file of at most 64 MiB (configs, vocabularies).
Json read_json_file(const std::string& path);

// A config file and where it came from, so every error can name both.
class Config {
 public:
  Config(Json json, std::string file) : json_(std::move(json)), file_(std::move(file)) {}
  static Config load(const std::string& path) { return Config(read_json_file(path), path); }

  const Json& json() const { return json_; }
  const std::string& file() const { return file_; }
  bool has(const std::string& key) const { return json_.contains(key) && !json_[key].is_null(); }

  // Integers are bounded, positive unless a call allows 0: a hostile or mistyped config must fail
  // here, not divide by zero or allocate without end while building the model.
  static constexpr int64_t kMaxInt = int64_t(1) << 20;
  int64_t get_int(const std::string& key, int64_t fallback, int64_t min = 1, int64_t max = kMaxInt) const;
  double get_double(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> get_ints(const std::string& key, const std::vector<int64_t>& fallback, int64_t min = 1, int64_t max = kMaxInt) const;
  std::vector<std::string> get_strings(const std::string& key, const std::vector<std::string>& fallback) const;
  // An int or a per-block list of ints (diffusers accepts both for head counts).
  std::vector<int64_t> get_int_or_ints(const std::string& key, int64_t fallback, size_t count, int64_t min = 1, int64_t max = kMaxInt) const;

  // Throws kConfig naming file, key and value unless the value is one of `accepted`.
  void require_one_of(const std::string& key, const std::string& value, const std::vector<std::string>& accepted) const;
  [[noreturn]] void reject(const std::string& key, const std::string& why) const;

 private:
  int64_t to_int(const std::string& key, const Json& value, int64_t min, int64_t max) const;
  Json json_;
  std::string file_;
};

}  // namespace ovam
