#pragma once
// Strict reading of YAML configuration files on top of yaml-cpp. Every value is
// read through a YamlField that knows the file, its line and its key path, so a
// wrong type, a bad value, a missing or an unknown key becomes one InputError
//   "FILE:LINE: key.path: problem"
// (LINE 1-based). Numbers and booleans must be plain (unquoted) scalars; a
// quoted "3" is a string, not a number. Duplicate keys in a map are errors
// (yaml-cpp itself keeps both silently).
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kintsugi {

class YamlMap;

// Parses YAML text; a syntax error becomes "ORIGIN:LINE:COL: YAML syntax error: ...".
YAML::Node parse_yaml(const std::string& text, const std::string& origin);

class YamlField {
 public:
  // `fallback_line` is used when the node has no position, and also for a null
  // node when `null_at_fallback` (an empty map value is reported on its key's line).
  YamlField(std::string origin, YAML::Node node, std::string path, int fallback_line,
            bool null_at_fallback = false);

  const YAML::Node& node() const { return node_; }
  const std::string& path() const { return path_; }
  const std::string& origin() const { return origin_; }
  int line() const { return line_; }  // 1-based
  bool is_null() const { return node_.IsNull(); }

  [[noreturn]] void fail(std::string_view problem) const;

  std::string as_string() const;  // any non-null scalar
  std::string as_enum(std::initializer_list<std::string_view> allowed) const;
  std::string as_enum(std::span<const std::string_view> allowed) const;
  uint64_t as_uint(uint64_t min = 0, uint64_t max = std::numeric_limits<uint64_t>::max()) const;
  int64_t as_int() const;
  double as_double() const;                         // any double, .inf and .nan included
  double as_finite_double() const;                  // rejects inf and nan
  bool as_bool() const;                             // true/false (also yes/no/on/off)
  std::vector<std::string> as_string_list() const;  // a sequence of strings
  std::vector<YamlField> items() const;             // a sequence; items are "path[i]"
  // A map whose keys are all in `known` (no duplicates).
  YamlMap as_map(std::initializer_list<std::string_view> known) const;
  // A map with free keys (e.g. task -> weight); duplicates still rejected.
  std::vector<std::pair<std::string, YamlField>> entries() const;

 private:
  std::string plain_scalar(std::string_view what) const;

  std::string origin_;
  YAML::Node node_;
  std::string path_;
  int line_;
};

class YamlMap {
 public:
  YamlMap(const YamlField& self, std::initializer_list<std::string_view> known);

  bool has(const std::string& key) const;
  std::optional<YamlField> get(const std::string& key) const;
  YamlField require(const std::string& key) const;  // "missing required key"
  const YamlField& self() const { return self_; }

 private:
  YamlField self_;
  std::vector<std::pair<std::string, YamlField>> entries_;
};

}  // namespace kintsugi
