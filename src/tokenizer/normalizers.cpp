// Normalizers of tokenizer.json, and the JSON access every component uses.
#include <algorithm>

#include "components.hpp"
#include "kintsugi/common/error.hpp"
#include "regex.hpp"
#include "text.hpp"

namespace kintsugi::tok {

using nlohmann::json;

const json& need(const json& j, const char* key, const std::string& origin, const char* what) {
  if (!j.is_object() || !j.contains(key))
    throw_input("{}: {}: missing key '{}'", origin, what, key);
  return j[key];
}

std::string need_string(const json& j, const char* key, const std::string& origin,
                        const char* what) {
  const json& v = need(j, key, origin, what);
  if (!v.is_string()) throw_input("{}: {}: '{}' must be a string", origin, what, key);
  return v.get<std::string>();
}

bool opt_bool(const json& j, const char* key, bool dflt, const std::string& origin,
              const char* what) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  if (!j[key].is_boolean()) throw_input("{}: {}: '{}' must be true or false", origin, what, key);
  return j[key].get<bool>();
}

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others
// for 256, 257, ... in byte order.
const std::vector<std::string>& byte_to_unicode() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    char32_t next = 256;
    for (unsigned b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      append_utf8(t[b], printable ? static_cast<char32_t>(b) : next++);
    }
    return t;
  }();
  return table;
}

const std::string& byte_char(unsigned char b) {
  return byte_to_unicode()[b];
}

int char_byte(char32_t c) {
  static const std::vector<int> table = [] {
    std::vector<int> t(0x200, -1);
    for (int b = 0; b < 256; ++b) {
      size_t i = 0;
      t[next_code_point(byte_to_unicode()[static_cast<size_t>(b)], i)] = b;
    }
    return t;
  }();
  return c < table.size() ? table[c] : -1;
}

namespace {

std::string type_of(const json& j, const std::string& origin, const char* what) {
  return need_string(j, "type", origin, what);
}

class NormalForms final : public Normalizer {
 public:
  explicit NormalForms(NormalForm f) : form_(f) {}
  std::string apply(std::string s, bool&) const override { return normalize(s, form_); }

 private:
  NormalForm form_;
};

class Lowercase final : public Normalizer {
 public:
  std::string apply(std::string s, bool&) const override { return lowercase(s); }
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string p) : prepend_(std::move(p)) {}
  std::string apply(std::string s, bool&) const override { return s.empty() ? s : prepend_ + s; }

 private:
  std::string prepend_;
};

}  // namespace

// {"String": s} or {"Regex": r}, as Replace and Split write their pattern.
Regex pattern_of(const json& j, const std::string& origin, const char* what) {
  const json& p = need(j, "pattern", origin, what);
  if (p.is_object() && p.contains("String") && p["String"].is_string())
    return Regex::literal(p["String"].get<std::string>(), origin);
  if (p.is_object() && p.contains("Regex") && p["Regex"].is_string())
    return Regex(p["Regex"].get<std::string>(), origin);
  throw_input("{}: {}: 'pattern' must be {{\"String\": ...}} or {{\"Regex\": ...}}", origin, what);
}

std::string replace_all(const Regex& re, const std::string& s, const std::string& content) {
  const auto matches = re.find_all(s);
  if (matches.empty()) return s;
  std::string out;
  size_t prev = 0;
  for (const auto& [a, b] : matches) {
    out.append(s, prev, a - prev);
    out += content;
    prev = b;
  }
  out.append(s, prev, std::string::npos);
  return out;
}

namespace {

class Replace final : public Normalizer {
 public:
  Replace(Regex re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  std::string apply(std::string s, bool& at_start) const override {
    const auto m = re_.find_all(s);
    if (!m.empty() && m[0].first == 0 && m[0].second > 0) {
      size_t i = 0;
      next_code_point(s, i);
      if (content_.empty() || m[0].second > i) at_start = false;
    }
    return replace_all(re_, s, content_);
  }

 private:
  Regex re_;
  std::string content_;
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  std::string apply(std::string s, bool& at_start) const override {
    size_t a = 0, b = s.size();
    if (left_) {
      while (a < s.size()) {
        size_t next = a;
        if (!is_whitespace(next_code_point(s, next))) break;
        a = next;
      }
    }
    if (right_) {
      size_t end = a;  // end of the last non-whitespace character
      for (size_t i = a; i < s.size();)
        if (!is_whitespace(next_code_point(s, i))) end = i;
      b = end;
    }
    if (a > 0) at_start = false;
    return s.substr(a, b - a);
  }

 private:
  bool left_, right_;
};

class SequenceN final : public Normalizer {
 public:
  explicit SequenceN(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  std::string apply(std::string s, bool& at_start) const override {
    for (const auto& p : parts_) s = p->apply(std::move(s), at_start);
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j, const std::string& origin) {
  if (j.is_null()) return nullptr;
  const std::string t = type_of(j, origin, "normalizer");
  if (t == "NFC") return std::make_unique<NormalForms>(NormalForm::NFC);
  if (t == "NFD") return std::make_unique<NormalForms>(NormalForm::NFD);
  if (t == "NFKC") return std::make_unique<NormalForms>(NormalForm::NFKC);
  if (t == "NFKD") return std::make_unique<NormalForms>(NormalForm::NFKD);
  if (t == "Lowercase") return std::make_unique<Lowercase>();
  if (t == "Prepend")
    return std::make_unique<Prepend>(need_string(j, "prepend", origin, "Prepend"));
  if (t == "Replace")
    return std::make_unique<Replace>(pattern_of(j, origin, "Replace normalizer"),
                                     need_string(j, "content", origin, "Replace normalizer"));
  if (t == "Strip")
    return std::make_unique<Strip>(opt_bool(j, "strip_left", true, origin, "Strip"),
                                   opt_bool(j, "strip_right", true, origin, "Strip"));
  if (t == "Sequence")
    return std::make_unique<SequenceN>(sequence_parts<Normalizer>(
        j, "normalizers", origin, "Sequence normalizer", make_normalizer));
  throw_input(
      "{}: normalizer '{}' is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, "
      "Prepend, Replace, Strip, Sequence)",
      origin, t);
}

}  // namespace kintsugi::tok
