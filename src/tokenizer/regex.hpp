#pragma once
// PCRE2 (UTF + UCP, JIT-compiled where the platform has it) for the patterns
// of tokenizer.json: HF compiles them with Oniguruma, whose syntax for what
// tokenizers use (\p{L}, \p{N}, \s, lookahead, (?i:...)) PCRE2 shares.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kintsugi::tok {

class Regex {
 public:
  // `origin` names the file in the InputError a bad pattern raises.
  Regex(const std::string& pattern, const std::string& origin);
  // A pattern that matches `literal` exactly.
  static Regex literal(std::string_view literal, const std::string& origin);
  // Every non-overlapping match, left to right, as byte ranges [first, second).
  // After an empty match the search resumes one character later, as
  // Oniguruma's iterator does.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;

 private:
  struct Code;
  std::shared_ptr<const Code> code_;
};

}  // namespace kintsugi::tok
