#include "kintsugi/eval/metrics.hpp"

#include <algorithm>
#include <cctype>
#include <numbers>

#include "kintsugi/common/error.hpp"

namespace kintsugi {

std::string strip(std::string_view s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(ws);
  return std::string(s.substr(b, e - b + 1));
}

std::string cut_at_stop(const std::string& text, const std::vector<std::string>& stops) {
  size_t cut = text.size();
  for (const auto& s : stops)
    if (!s.empty()) cut = std::min(cut, text.find(s));
  return text.substr(0, cut);
}

bool has_stop(const std::string& text, const std::vector<std::string>& stops) {
  for (const auto& s : stops)
    if (!s.empty() && text.find(s) != std::string::npos) return true;
  return false;
}

namespace {
std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
}  // namespace

std::string extract_answer(const std::string& output, const std::optional<std::regex>& re,
                           bool ignore_case) {
  std::string a = strip(output);
  if (re) {
    std::smatch m;
    if (std::regex_search(a, m, *re)) {
      a = strip(m.size() > 1 ? m[1].str() : m[0].str());
    } else {
      a.clear();
    }
  }
  return ignore_case ? lower(a) : a;
}

bool exact_match(const std::string& output, const std::string& target,
                 const std::optional<std::regex>& re, bool ignore_case) {
  const std::string t = ignore_case ? lower(strip(target)) : strip(target);
  return extract_answer(output, re, ignore_case) == t;
}

std::optional<std::regex> compile_task_regex(const std::string& pattern, const std::string& task) {
  if (pattern.empty()) return std::nullopt;
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw_input("task {}: regex '{}' is invalid: {}", task, pattern, e.what());
  }
}

size_t argmax_index(std::span<const double> values) {
  size_t best = 0;
  for (size_t i = 1; i < values.size(); ++i)
    if (values[i] > values[best]) best = i;
  return best;
}

ChoiceScore score_choice(std::span<const double> logliks, const std::vector<std::string>& choices,
                         size_t label) {
  KS_CHECK(logliks.size() == choices.size() && !choices.empty(), "one log-likelihood per choice");
  std::vector<double> norm(choices.size());
  for (size_t i = 0; i < choices.size(); ++i)
    norm[i] = logliks[i] / static_cast<double>(count_chars(choices[i]));
  ChoiceScore s;
  s.pred = argmax_index(logliks);
  s.pred_norm = argmax_index(norm);
  s.acc = s.pred == label;
  s.acc_norm = s.pred_norm == label;
  return s;
}

double bits_per_byte(double nll_nats, size_t bytes) {
  KS_CHECK(bytes > 0, "bits per byte of an empty text");
  return nll_nats / std::numbers::ln2 / static_cast<double>(bytes);
}

namespace {

// Decodes the code point at s[i] (valid UTF-8) and advances i.
char32_t decode_at(std::string_view s, size_t& i) {
  const auto b = static_cast<unsigned char>(s[i]);
  const size_t n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
  char32_t c = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
  for (size_t k = 1; k < n && i + k < s.size(); ++k)
    c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return c;
}

}  // namespace

size_t count_chars(std::string_view s) {
  size_t n = 0;
  for (const char ch : s) n += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
  return n;
}

bool is_python_space(char32_t c) {
  // CPython's _PyUnicode_IsWhitespace: bidirectional class WS, B or S, or category Zs.
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

size_t count_words(std::string_view text) {
  size_t words = 1;
  bool in_space = false;
  for (size_t i = 0; i < text.size();) {
    const bool sp = is_python_space(decode_at(text, i));
    if (sp && !in_space) ++words;
    in_space = sp;
  }
  return words;
}

std::string_view rstrip_python(std::string_view text) {
  size_t end = 0;
  for (size_t i = 0; i < text.size();)
    if (!is_python_space(decode_at(text, i))) end = i;
  return text.substr(0, end);
}

}  // namespace kintsugi
