#pragma once
// Per-example scoring after lm-evaluation-harness.
#include <cstddef>
#include <optional>
// GCC 12 with -fsanitize=address,undefined reports a false -Wmaybe-uninitialized
// inside std::regex; the warning is off for this include only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <regex>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kintsugi {

// Whitespace (space, tab, newline, CR, FF, VT) removed at both ends.
std::string strip(std::string_view s);
// `text` cut before the earliest occurrence of any stop string.
std::string cut_at_stop(const std::string& text, const std::vector<std::string>& stops);
// True when `text` contains any stop string.
bool has_stop(const std::string& text, const std::vector<std::string>& stops);

// generate: the answer from a model output (already cut at the stop string):
// stripped; with a regex, its first match (capture group 1 if the pattern has
// one), or "" when it does not match; lower-cased if ignore_case.
std::string extract_answer(const std::string& output, const std::optional<std::regex>& re,
                           bool ignore_case);
// exact_match: the extracted answer equals the stripped (lower-cased) target.
bool exact_match(const std::string& output, const std::string& target,
                 const std::optional<std::regex>& re, bool ignore_case);
// Compiles a task's regex; InputError naming the task when it is invalid.
std::optional<std::regex> compile_task_regex(const std::string& pattern, const std::string& task);

// choice: index of the largest value (the first one on ties).
size_t argmax_index(std::span<const double> values);
struct ChoiceScore {
  size_t pred = 0, pred_norm = 0;
  bool acc = false, acc_norm = false;
};
// acc: argmax of log-likelihoods; acc_norm: argmax of log-likelihood / the
// choice's length in characters (code points, Python's len), as lm-eval.
ChoiceScore score_choice(std::span<const double> logliks, const std::vector<std::string>& choices,
                         size_t label);

// perplexity: bits per byte from a total negative log-likelihood in nats.
double bits_per_byte(double nll_nats, size_t bytes);
// Number of code points of valid UTF-8 `s` (Python's len).
size_t count_chars(std::string_view s);
// Python's str.isspace() for one code point (what re's \s and str.rstrip() use).
bool is_python_space(char32_t c);
// lm-eval's word count for word_perplexity: len(re.split(r"\s+", text)),
// i.e. 1 + the number of maximal runs of whitespace (a leading or trailing
// run counts, as the empty string it splits off does).
size_t count_words(std::string_view text);
// `text` without its trailing whitespace (Python's str.rstrip()).
std::string_view rstrip_python(std::string_view text);

}  // namespace kintsugi
