#include "added_tokens.hpp"

#include "text.hpp"

namespace kintsugi::tok {

namespace {

uint64_t edge(int32_t node, unsigned char b) {
  return (static_cast<uint64_t>(node) << 8) | b;
}

// The regex crate's \w$ and ^\w (single_word's neighbours).
bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xc0) == 0x80) --i;
  return is_word_char(next_code_point(s, i));
}

bool starts_with_word(std::string_view s) {
  size_t i = 0;
  return !s.empty() && is_word_char(next_code_point(s, i));
}

// Start of the whitespace run that ends s (\s*$).
size_t trailing_space_start(std::string_view s) {
  size_t start = 0;
  for (size_t i = 0; i < s.size();)
    if (!is_whitespace(next_code_point(s, i))) start = i;
  return start;
}

// End of the whitespace run that starts s (^\s*).
size_t leading_space_end(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t next = i;
    if (!is_whitespace(next_code_point(s, next))) break;
    i = next;
  }
  return i;
}

}  // namespace

AddedMatcher::AddedMatcher(const std::vector<const AddedToken*>& tokens,
                           const std::vector<std::string>& patterns)
    : tokens_(tokens) {
  terminal_.push_back(-1);
  for (size_t k = 0; k < tokens.size(); ++k) {
    const std::string& p = patterns[k];
    if (p.empty()) continue;
    int32_t node = 0;
    for (unsigned char b : p) {
      const auto [it, added] =
          edges_.try_emplace(edge(node, b), static_cast<int32_t>(terminal_.size()));
      if (added) terminal_.push_back(-1);
      node = it->second;
    }
    if (terminal_[static_cast<size_t>(node)] < 0)
      terminal_[static_cast<size_t>(node)] = static_cast<int32_t>(k);
    first_[static_cast<unsigned char>(p[0])] = true;
  }
}

int32_t AddedMatcher::longest_at(std::string_view s, size_t pos, size_t& end) const {
  int32_t node = 0, found = -1;
  for (size_t i = pos; i < s.size(); ++i) {
    const auto it = edges_.find(edge(node, static_cast<unsigned char>(s[i])));
    if (it == edges_.end()) break;
    node = it->second;
    if (terminal_[static_cast<size_t>(node)] >= 0) {
      found = terminal_[static_cast<size_t>(node)];
      end = i + 1;
    }
  }
  return found;
}

std::vector<AddedMatcher::Split> AddedMatcher::split(std::string_view s) const {
  if (s.empty()) return {{0, 0, -1}};
  std::vector<Split> out;
  size_t start_offset = 0;  // end of the last split emitted
  size_t pos = 0;           // where the search resumes (end of the last match)
  while (pos < s.size()) {
    size_t a = pos, b = 0;
    int32_t k = -1;
    for (; a < s.size(); ++a)
      if (first_[static_cast<unsigned char>(s[a])] && (k = longest_at(s, a, b)) >= 0) break;
    if (k < 0) break;
    pos = b;
    const AddedToken& t = *tokens_[static_cast<size_t>(k)];
    if (t.single_word && ((a > 0 && ends_with_word(s.substr(0, a))) ||
                          (b < s.size() && starts_with_word(s.substr(b)))))
      continue;
    if (t.lstrip) a = std::max(trailing_space_start(s.substr(0, a)), start_offset);
    if (t.rstrip) b += leading_space_end(s.substr(b));
    if (start_offset < a) out.push_back({start_offset, a, -1});
    out.push_back({a, b, t.id});
    start_offset = b;
  }
  if (start_offset != s.size()) out.push_back({start_offset, s.size(), -1});
  return out;
}

}  // namespace kintsugi::tok
