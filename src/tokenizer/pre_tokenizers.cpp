// Pre-tokenizers of tokenizer.json. Each splits a piece the way HF's
// NormalizedString::split does: the pattern yields (range, is_match) spans
// covering the piece, a behaviour decides what becomes a piece, and empty
// pieces are dropped.
#include <functional>

#include "components.hpp"
#include "kintsugi/common/error.hpp"
#include "regex.hpp"
#include "text.hpp"

namespace kintsugi::tok {

using nlohmann::json;

namespace {

struct Span {
  size_t a, b;
  bool match;
};
using Spans = std::vector<Span>;
enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior behavior_of(const json& j, const std::string& origin, const char* what) {
  const std::string b = need_string(j, "behavior", origin, what);
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  throw_input("{}: {}: unknown behavior '{}'", origin, what, b);
}

// Regex matches as spans covering all of s (HF's Pattern::find_matches).
Spans regex_spans(const Regex& re, std::string_view s, bool invert) {
  if (s.empty()) return {{0, 0, false}};
  Spans out;
  size_t prev = 0;
  for (const auto& [a, b] : re.find_all(s)) {
    if (prev != a) out.push_back({prev, a, invert});
    out.push_back({a, b, !invert});
    prev = b;
  }
  if (prev != s.size()) out.push_back({prev, s.size(), invert});
  return out;
}

// Each character for which `pred` holds is a match of its own (HF's
// Pattern for a char predicate).
Spans char_spans(std::string_view s, const std::function<bool(char32_t)>& pred) {
  if (s.empty()) return {{0, 0, false}};
  Spans out;
  size_t prev = 0;
  for (size_t i = 0; i < s.size();) {
    const size_t a = i;
    if (pred(next_code_point(s, i))) {
      if (prev != a) out.push_back({prev, a, false});
      out.push_back({a, i, true});
      prev = i;
    }
  }
  if (prev != s.size()) out.push_back({prev, s.size(), false});
  return out;
}

// The kept ranges for a behaviour (`match` now means "remove").
Spans apply_behavior(Spans m, Behavior b) {
  Spans out;
  bool prev_match = false;
  switch (b) {
    case Behavior::Isolated:
      for (auto& s : m) s.match = false;
      return m;
    case Behavior::Removed:
      return m;
    case Behavior::Contiguous:
      for (const auto& s : m) {
        if (s.match == prev_match && !out.empty())
          out.back().b = s.b;
        else
          out.push_back({s.a, s.b, false});
        prev_match = s.match;
      }
      return out;
    case Behavior::MergedWithPrevious:
      for (const auto& s : m) {
        if (s.match && !prev_match && !out.empty())
          out.back().b = s.b;
        else
          out.push_back({s.a, s.b, false});
        prev_match = s.match;
      }
      return out;
    case Behavior::MergedWithNext:
      for (auto it = m.rbegin(); it != m.rend(); ++it) {
        if (it->match && !prev_match && !out.empty())
          out.back().a = it->a;
        else
          out.push_back({it->a, it->b, false});
        prev_match = it->match;
      }
      return Spans(out.rbegin(), out.rend());
  }
  return out;
}

void emit(const Piece& p, const Spans& spans, Pieces& out) {
  for (const auto& s : spans)
    if (!s.match && s.b > s.a)
      out.push_back({p.text.substr(s.a, s.b - s.a), -1, p.at_start && s.a == 0});
}

// Runs `f` on every piece not yet final, replacing it by what `f` appends.
template <typename F>
void split_each(Pieces& pieces, F&& f) {
  Pieces out;
  out.reserve(pieces.size());
  for (auto& p : pieces) {
    if (p.id >= 0)
      out.push_back(std::move(p));
    else
      f(p, out);
  }
  pieces = std::move(out);
}

// GPT-2's pattern, which ByteLevel applies when use_regex is set.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool prefix, bool use_regex, const std::string& origin)
      : prefix_(prefix), re_(use_regex ? std::make_unique<Regex>(kGpt2Pattern, origin) : nullptr) {}
  void apply(Pieces& pieces) const override {
    split_each(pieces, [&](Piece& p, Pieces& out) {
      if (prefix_ && (p.text.empty() || p.text[0] != ' ')) p.text = " " + p.text;
      if (re_) {
        emit(p, apply_behavior(regex_spans(*re_, p.text, false), Behavior::Isolated), out);
      } else if (!p.text.empty()) {
        out.push_back(std::move(p));
      }
    });
    for (auto& p : pieces)
      if (p.id < 0) p.text = to_byte_chars(p.text);
  }

 private:
  static std::string to_byte_chars(const std::string& s) {
    std::string out;
    out.reserve(s.size() * 2);
    for (unsigned char c : s) out += byte_char(c);
    return out;
  }
  bool prefix_;
  std::unique_ptr<Regex> re_;
};

class Split final : public PreTokenizer {
 public:
  Split(Regex re, Behavior b, bool invert) : re_(std::move(re)), b_(b), invert_(invert) {}
  void apply(Pieces& pieces) const override {
    split_each(pieces, [&](Piece& p, Pieces& out) {
      emit(p, apply_behavior(regex_spans(re_, p.text, invert_), b_), out);
    });
  }

 private:
  Regex re_;
  Behavior b_;
  bool invert_;
};

class CharSplit final : public PreTokenizer {
 public:
  CharSplit(std::function<bool(char32_t)> pred, Behavior b) : pred_(std::move(pred)), b_(b) {}
  void apply(Pieces& pieces) const override {
    split_each(pieces, [&](Piece& p, Pieces& out) {
      emit(p, apply_behavior(char_spans(p.text, pred_), b_), out);
    });
  }

 private:
  std::function<bool(char32_t)> pred_;
  Behavior b_;
};

enum class PrependScheme { First, Always, Never };

class Metaspace final : public PreTokenizer {
 public:
  Metaspace(std::string rep, PrependScheme scheme, bool split, const std::string& origin)
      : rep_(std::move(rep)),
        scheme_(scheme),
        split_(split),
        space_re_(Regex::literal(" ", origin)),
        rep_re_(Regex::literal(rep_, origin)) {}
  void apply(Pieces& pieces) const override {
    split_each(pieces, [&](Piece& p, Pieces& out) {
      p.text = replace_all(space_re_, p.text, rep_);
      const bool starts = p.text.compare(0, rep_.size(), rep_) == 0;
      if (!starts &&
          (scheme_ == PrependScheme::Always || (scheme_ == PrependScheme::First && p.at_start)))
        p.text = rep_ + p.text;
      if (split_)
        emit(p, apply_behavior(regex_spans(rep_re_, p.text, false), Behavior::MergedWithNext), out);
      else if (!p.text.empty())
        out.push_back(std::move(p));
    });
  }

 private:
  std::string rep_;
  PrependScheme scheme_;
  bool split_;
  Regex space_re_, rep_re_;
};

// \w+|[^\w\s]+ kept, the rest (whitespace) removed: runs of word characters
// and runs of other non-space characters (the regex crate's \w and \s).
class Whitespace final : public PreTokenizer {
 public:
  void apply(Pieces& pieces) const override {
    split_each(pieces, [&](Piece& p, Pieces& out) {
      const std::string& s = p.text;
      int run = 0;  // 0 none, 1 word, 2 other
      size_t start = 0;
      for (size_t i = 0; i < s.size();) {
        const size_t a = i;
        const char32_t c = next_code_point(s, i);
        const int kind = is_word_char(c) ? 1 : is_whitespace(c) ? 0 : 2;
        if (kind != run) {
          if (run != 0) out.push_back({s.substr(start, a - start), -1, p.at_start && start == 0});
          start = a;
          run = kind;
        }
      }
      if (run != 0) out.push_back({s.substr(start), -1, p.at_start && start == 0});
    });
  }
};

class SequenceP final : public PreTokenizer {
 public:
  explicit SequenceP(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void apply(Pieces& pieces) const override {
    for (const auto& p : parts_) p->apply(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

PrependScheme prepend_scheme(const json& j, const std::string& origin) {
  if (j.contains("prepend_scheme")) {
    const std::string s = need_string(j, "prepend_scheme", origin, "Metaspace");
    if (s == "first") return PrependScheme::First;
    if (s == "always") return PrependScheme::Always;
    if (s == "never") return PrependScheme::Never;
    throw_input("{}: Metaspace: unknown prepend_scheme '{}'", origin, s);
  }
  // Files written before prepend_scheme existed say add_prefix_space.
  return opt_bool(j, "add_prefix_space", true, origin, "Metaspace") ? PrependScheme::Always
                                                                    : PrependScheme::Never;
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const std::string& origin) {
  if (j.is_null()) return nullptr;
  const std::string t = need_string(j, "type", origin, "pre_tokenizer");
  if (t == "ByteLevel")
    return std::make_unique<ByteLevel>(opt_bool(j, "add_prefix_space", true, origin, t.c_str()),
                                       opt_bool(j, "use_regex", true, origin, t.c_str()), origin);
  if (t == "Split")
    return std::make_unique<Split>(pattern_of(j, origin, "Split pre_tokenizer"),
                                   behavior_of(j, origin, "Split pre_tokenizer"),
                                   opt_bool(j, "invert", false, origin, "Split"));
  if (t == "Metaspace")
    return std::make_unique<Metaspace>(need_string(j, "replacement", origin, "Metaspace"),
                                       prepend_scheme(j, origin),
                                       opt_bool(j, "split", true, origin, "Metaspace"), origin);
  if (t == "Digits")
    return std::make_unique<CharSplit>(is_numeric,
                                       opt_bool(j, "individual_digits", false, origin, "Digits")
                                           ? Behavior::Isolated
                                           : Behavior::Contiguous);
  if (t == "Punctuation")
    return std::make_unique<CharSplit>(is_punctuation, j.contains("behavior")
                                                           ? behavior_of(j, origin, "Punctuation")
                                                           : Behavior::Isolated);
  if (t == "WhitespaceSplit") return std::make_unique<CharSplit>(is_whitespace, Behavior::Removed);
  if (t == "Whitespace") return std::make_unique<Whitespace>();
  if (t == "Sequence")
    return std::make_unique<SequenceP>(sequence_parts<PreTokenizer>(
        j, "pretokenizers", origin, "Sequence pre_tokenizer", make_pre_tokenizer));
  throw_input(
      "{}: pre_tokenizer '{}' is not supported (supported: ByteLevel, Split, Metaspace, "
      "Digits, Punctuation, Whitespace, WhitespaceSplit, Sequence)",
      origin, t);
}

}  // namespace kintsugi::tok
