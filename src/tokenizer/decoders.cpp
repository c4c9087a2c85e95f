// Decoders of tokenizer.json: each maps the list of token strings to a new
// list (HF's decode_chain); the tokenizer joins the final list.
#include "components.hpp"
#include "kintsugi/common/error.hpp"
#include "regex.hpp"
#include "text.hpp"

namespace kintsugi::tok {

using nlohmann::json;

namespace {

// Every token's characters back to bytes (a token with a character outside
// the table keeps its own UTF-8), then the whole as lossy UTF-8.
class ByteLevelD final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      const size_t mark = bytes.size();
      bool ok = true;
      for (size_t i = 0; i < t.size() && ok;) {
        const int b = char_byte(next_code_point(t, i));
        ok = b >= 0;
        if (ok) bytes += static_cast<char>(b);
      }
      if (!ok) bytes.replace(mark, std::string::npos, t);
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

// Runs of <0xXX> tokens become their bytes; a run that is not valid UTF-8
// becomes one U+FFFD per byte.
class ByteFallbackD final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string run;
    size_t run_len = 0;
    auto flush = [&] {
      if (run_len == 0) return;
      if (utf8_lossy(run) == run) {
        out.push_back(run);
      } else {
        for (size_t k = 0; k < run_len; ++k) out.emplace_back("\xef\xbf\xbd");
      }
      run.clear();
      run_len = 0;
    };
    for (auto& t : tokens) {
      const int b = byte_token(t);
      if (b >= 0) {
        run += static_cast<char>(b);
        ++run_len;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }

 private:
  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static int byte_token(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
    const int h = hex(t[3]), l = hex(t[4]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
  }
};

class FuseD final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, all);
  }
};

// Up to `start` leading and `stop` trailing `content` characters off each token.
class StripD final : public Decoder {
 public:
  StripD(char32_t c, size_t start, size_t stop) : c_(c), start_(start), stop_(stop) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<size_t> at;  // byte offset of each character, then the end
      for (size_t i = 0; i < t.size();) {
        at.push_back(i);
        next_code_point(t, i);
      }
      const size_t n = at.size();
      at.push_back(t.size());
      auto is_c = [&](size_t k) {
        size_t i = at[k];
        return next_code_point(t, i) == c_;
      };
      size_t a = 0, b = n;
      while (a < start_ && a < n && is_c(a)) ++a;
      for (size_t k = 0; k < stop_ && b > 0 && is_c(b - 1); ++k) --b;
      t = b > a ? t.substr(at[a], at[b] - at[a]) : std::string();
    }
  }

 private:
  char32_t c_;
  size_t start_, stop_;
};

class ReplaceD final : public Decoder {
 public:
  ReplaceD(Regex re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) t = replace_all(re_, t, content_);
  }

 private:
  Regex re_;
  std::string content_;
};

// The replacement character becomes a space, except in the first token when
// a prefix was prepended (it is dropped there).
class MetaspaceD final : public Decoder {
 public:
  MetaspaceD(char32_t rep, bool drop_first) : rep_(rep), drop_first_(drop_first) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (size_t k = 0; k < tokens.size(); ++k) {
      const std::string& t = tokens[k];
      std::string out;
      for (size_t i = 0; i < t.size();) {
        const size_t a = i;
        if (next_code_point(t, i) != rep_) {
          out.append(t, a, i - a);
        } else if (!(k == 0 && drop_first_)) {
          out += ' ';
        }
      }
      tokens[k] = std::move(out);
    }
  }

 private:
  char32_t rep_;
  bool drop_first_;
};

class SequenceD final : public Decoder {
 public:
  explicit SequenceD(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->apply(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

char32_t one_char(const json& j, const char* key, const std::string& origin, const char* what) {
  const std::string s = need_string(j, key, origin, what);
  size_t i = 0;
  const char32_t c = s.empty() ? 0 : next_code_point(s, i);
  if (s.empty() || i != s.size())
    throw_input("{}: {}: '{}' must be a single character", origin, what, key);
  return c;
}

size_t count(const json& j, const char* key, const std::string& origin) {
  const json& v = need(j, key, origin, "Strip decoder");
  if (!v.is_number_unsigned()) throw_input("{}: Strip decoder: '{}' must be a count", origin, key);
  return v.get<size_t>();
}

bool metaspace_prepends(const json& j, const std::string& origin) {
  if (j.contains("prepend_scheme"))
    return need_string(j, "prepend_scheme", origin, "Metaspace decoder") != "never";
  return opt_bool(j, "add_prefix_space", true, origin, "Metaspace decoder");
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j, const std::string& origin) {
  if (j.is_null()) return nullptr;
  const std::string t = need_string(j, "type", origin, "decoder");
  if (t == "ByteLevel") return std::make_unique<ByteLevelD>();
  if (t == "ByteFallback") return std::make_unique<ByteFallbackD>();
  if (t == "Fuse") return std::make_unique<FuseD>();
  if (t == "Strip")
    return std::make_unique<StripD>(one_char(j, "content", origin, "Strip decoder"),
                                    count(j, "start", origin), count(j, "stop", origin));
  if (t == "Replace")
    return std::make_unique<ReplaceD>(pattern_of(j, origin, "Replace decoder"),
                                      need_string(j, "content", origin, "Replace decoder"));
  if (t == "Metaspace")
    return std::make_unique<MetaspaceD>(one_char(j, "replacement", origin, "Metaspace decoder"),
                                        metaspace_prepends(j, origin));
  if (t == "Sequence")
    return std::make_unique<SequenceD>(
        sequence_parts<Decoder>(j, "decoders", origin, "Sequence decoder", make_decoder));
  throw_input(
      "{}: decoder '{}' is not supported (supported: ByteLevel, ByteFallback, Fuse, "
      "Strip, Replace, Metaspace, Sequence)",
      origin, t);
}

}  // namespace kintsugi::tok
