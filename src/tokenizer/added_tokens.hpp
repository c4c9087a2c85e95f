#pragma once
// HF's added vocabulary: tokens matched in the text before the model sees it,
// leftmost-longest (as HF's Aho-Corasick automaton with LeftmostLongest), with
// single_word / lstrip / rstrip applied to each match.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kintsugi::tok {

struct AddedToken {
  std::string content;
  // What decode and id_to_token give: HF keeps a normalized token's content
  // normalized in its id -> token map.
  std::string decoded;
  int32_t id = -1;
  bool special = false, normalized = true, lstrip = false, rstrip = false, single_word = false;
};

// A set of added tokens searched in a text.
class AddedMatcher {
 public:
  // `patterns[k]` is what token `tokens[k]` matches (its content, normalized
  // for normalized tokens).
  AddedMatcher(const std::vector<const AddedToken*>& tokens,
               const std::vector<std::string>& patterns);
  struct Split {
    size_t a, b;
    int32_t id;  // -1: text between tokens
  };
  // Splits covering all of `s` (one empty non-token split when s is empty).
  std::vector<Split> split(std::string_view s) const;
  bool empty() const { return tokens_.empty(); }

 private:
  // Longest token starting exactly at `pos`: its index, or -1; `end` set.
  int32_t longest_at(std::string_view s, size_t pos, size_t& end) const;
  std::vector<const AddedToken*> tokens_;
  std::vector<int32_t> terminal_;                // per trie node: token index or -1
  std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> node
  bool first_[256] = {};
};

}  // namespace kintsugi::tok
