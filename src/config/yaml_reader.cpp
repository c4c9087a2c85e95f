#include "kintsugi/config/yaml_reader.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>
#include <sstream>
#include <vector>

#include "kintsugi/common/error.hpp"

namespace kintsugi {

namespace {

int node_line(const YAML::Node& n, int fallback) {
  const int l = n.Mark().line;
  return l >= 0 ? l + 1 : fallback;
}

std::string child_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

std::string join(std::span<const std::string_view> words) {
  std::string out;
  for (auto w : words) {
    if (!out.empty()) out += ", ";
    out += w;
  }
  return out;
}

const char* kind_name(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Undefined:
      return "nothing";
  }
  return "?";
}

// Parses the whole of `s` (an optional leading '+' allowed) into `v`:
// result_out_of_range, invalid_argument for anything but a number, or success.
template <typename T>
std::errc parse_whole(const std::string& s, T& v) {
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (b != e && *b == '+') ++b;
  const auto [ptr, ec] = std::from_chars(b, e, v);
  if (ec != std::errc()) return ec;
  return ptr != e || b == e ? std::errc::invalid_argument : std::errc();
}

// Events ignored: a pass that only counts documents.
class NoEvents : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// yaml-cpp 0.7 (Debian 12's) never finishes LoadAll on a document whose
// first token is ',' (found by the fuzzer: it yields empty documents
// forever, and memory grows until the process dies). A first pass without
// nodes counts the documents and gives up past a number no file of ours has.
void check_parser_terminates(const std::string& text, const std::string& origin) {
  constexpr int kMaxDocuments = 64;
  std::istringstream in(text);
  YAML::Parser parser(in);
  NoEvents events;
  for (int n = 0; parser.HandleNextDocument(events); ++n)
    if (n >= kMaxDocuments)
      throw_input(
          "{}: YAML syntax error: more than {} documents, or a ',' outside a flow collection "
          "([...] or {{...}}) where a document starts",
          origin, kMaxDocuments);
}

}  // namespace

YAML::Node parse_yaml(const std::string& text, const std::string& origin) {
  std::vector<YAML::Node> docs;
  try {
    check_parser_terminates(text, origin);
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    throw_input("{}:{}:{}: YAML syntax error: {}", origin, e.mark.line + 1, e.mark.column + 1,
                e.msg);
  }
  // YAML::Load would return the first document and drop the rest unread.
  for (size_t i = 1; i < docs.size(); ++i)
    if (!docs[i].IsNull())
      throw_input(
          "{}:{}: a second YAML document (after ---): a file holds one document (multi-document "
          "files, such as mergekit-mega's, are not supported)",
          origin, node_line(docs[i], 1));
  return docs.empty() ? YAML::Node() : docs[0];
}

YamlField::YamlField(std::string origin, YAML::Node node, std::string path, int fallback_line,
                     bool null_at_fallback)
    : origin_(std::move(origin)),
      node_(std::move(node)),
      path_(std::move(path)),
      line_(null_at_fallback && node_.IsNull() ? fallback_line : node_line(node_, fallback_line)) {}

void YamlField::fail(std::string_view problem) const {
  if (path_.empty()) throw_input("{}:{}: {}", origin_, line_, problem);
  throw_input("{}:{}: {}: {}", origin_, line_, path_, problem);
}

std::string YamlField::as_string() const {
  if (!node_.IsScalar()) fail(fmt::format("expected a string, got {}", kind_name(node_)));
  return node_.Scalar();
}

std::string YamlField::plain_scalar(std::string_view what) const {
  if (!node_.IsScalar()) fail(fmt::format("expected {}, got {}", what, kind_name(node_)));
  // yaml-cpp tags quoted scalars "!": a quoted value is a string, never a number.
  if (node_.Tag() == "!")
    fail(fmt::format("expected {}, got the quoted string \"{}\"", what, node_.Scalar()));
  return node_.Scalar();
}

std::string YamlField::as_enum(std::initializer_list<std::string_view> allowed) const {
  return as_enum(std::span(allowed.begin(), allowed.size()));
}

std::string YamlField::as_enum(std::span<const std::string_view> allowed) const {
  const std::string v = as_string();
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end())
    fail(fmt::format("\"{}\" is not one of: {}", v, join(allowed)));
  return v;
}

uint64_t YamlField::as_uint(uint64_t min, uint64_t max) const {
  const std::string s = plain_scalar("a non-negative integer");
  uint64_t v = 0;
  const std::errc ec = parse_whole(s, v);
  if (ec == std::errc::result_out_of_range) fail(fmt::format("{} is too large", s));
  if (ec != std::errc()) {
    if (!s.empty() && s[0] == '-') fail(fmt::format("must be >= {}, got {}", min, s));
    fail(fmt::format("expected a non-negative integer, got \"{}\"", s));
  }
  if (v < min) fail(fmt::format("must be >= {}, got {}", min, v));
  if (v > max) fail(fmt::format("must be <= {}, got {}", max, v));
  return v;
}

int64_t YamlField::as_int() const {
  const std::string s = plain_scalar("an integer");
  int64_t v = 0;
  const std::errc ec = parse_whole(s, v);
  if (ec == std::errc::result_out_of_range) fail(fmt::format("{} is out of range", s));
  if (ec != std::errc()) fail(fmt::format("expected an integer, got \"{}\"", s));
  return v;
}

double YamlField::as_double() const {
  const std::string s = plain_scalar("a number");
  // YAML 1.1/1.2 spellings of infinity and NaN.
  static const std::set<std::string> pos_inf = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"};
  static const std::set<std::string> neg_inf = {"-.inf", "-.Inf", "-.INF"};
  static const std::set<std::string> nan = {".nan", ".NaN", ".NAN"};
  if (pos_inf.count(s)) return std::numeric_limits<double>::infinity();
  if (neg_inf.count(s)) return -std::numeric_limits<double>::infinity();
  if (nan.count(s)) return std::numeric_limits<double>::quiet_NaN();
  double v = 0;
  const std::errc ec = parse_whole(s, v);
  if (ec == std::errc::result_out_of_range) fail(fmt::format("{} is out of range", s));
  if (ec != std::errc()) fail(fmt::format("expected a number, got \"{}\"", s));
  return v;
}

double YamlField::as_finite_double() const {
  const double v = as_double();
  if (!std::isfinite(v)) fail(fmt::format("must be a finite number, got {}", node_.Scalar()));
  return v;
}

bool YamlField::as_bool() const {
  const std::string s = plain_scalar("true or false");
  static const std::set<std::string> yes = {"true", "True", "TRUE", "yes", "Yes",
                                            "YES",  "on",   "On",   "ON"};
  static const std::set<std::string> no = {"false", "False", "FALSE", "no", "No",
                                           "NO",    "off",   "Off",   "OFF"};
  if (yes.count(s)) return true;
  if (no.count(s)) return false;
  fail(fmt::format("expected true or false, got \"{}\"", s));
}

std::vector<YamlField> YamlField::items() const {
  if (!node_.IsSequence()) fail(fmt::format("expected a list, got {}", kind_name(node_)));
  std::vector<YamlField> out;
  out.reserve(node_.size());
  for (size_t i = 0; i < node_.size(); ++i)
    out.emplace_back(origin_, node_[i], fmt::format("{}[{}]", path_, i), line_);
  return out;
}

std::vector<std::string> YamlField::as_string_list() const {
  std::vector<std::string> out;
  for (const auto& item : items()) out.push_back(item.as_string());
  return out;
}

std::vector<std::pair<std::string, YamlField>> YamlField::entries() const {
  if (!node_.IsMap()) fail(fmt::format("expected a map, got {}", kind_name(node_)));
  std::vector<std::pair<std::string, YamlField>> out;
  std::set<std::string> seen;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    const YamlField key(origin_, it->first, path_, line_);
    if (!it->first.IsScalar())
      key.fail(fmt::format("map keys must be strings, got {}", kind_name(it->first)));
    const std::string k = it->first.Scalar();
    const YamlField keyed(origin_, it->first, child_path(path_, k), line_);
    if (!seen.insert(k).second) keyed.fail("duplicate key");
    out.emplace_back(k, YamlField(origin_, it->second, child_path(path_, k), keyed.line(), true));
  }
  return out;
}

YamlMap YamlField::as_map(std::initializer_list<std::string_view> known) const {
  return YamlMap(*this, known);
}

YamlMap::YamlMap(const YamlField& self, std::initializer_list<std::string_view> known)
    : self_(self), entries_(self.entries()) {
  for (const auto& [k, f] : entries_) {
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      // Report on the key's own line (the value may start on a later one).
      YamlField keyed(self_.origin(), YAML::Node(), f.path(), f.line());
      for (auto it = self_.node().begin(); it != self_.node().end(); ++it)
        if (it->first.IsScalar() && it->first.Scalar() == k)
          keyed = YamlField(self_.origin(), it->first, f.path(), f.line());
      keyed.fail(fmt::format("unknown key (known keys: {})",
                             join(std::span(known.begin(), known.size()))));
    }
  }
}

bool YamlMap::has(const std::string& key) const {
  for (const auto& e : entries_)
    if (e.first == key) return true;
  return false;
}

std::optional<YamlField> YamlMap::get(const std::string& key) const {
  for (const auto& e : entries_)
    if (e.first == key) return e.second;
  return std::nullopt;
}

YamlField YamlMap::require(const std::string& key) const {
  if (auto f = get(key)) return *f;
  YamlField(self_.origin(), self_.node(), child_path(self_.path(), key), self_.line())
      .fail("missing required key");
}

}  // namespace kintsugi
