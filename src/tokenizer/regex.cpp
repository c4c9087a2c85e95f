#define PCRE2_CODE_UNIT_WIDTH 8
#include "regex.hpp"

#include <pcre2.h>

#include <cctype>

#include "kintsugi/common/error.hpp"
#include "text.hpp"

namespace kintsugi::tok {

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

namespace {

// One match-data block per thread, grown to the largest pattern used: the hot
// loop then allocates nothing.
struct MatchData {
  pcre2_match_data* md = pcre2_match_data_create(16, nullptr);
  ~MatchData() { pcre2_match_data_free(md); }
};

pcre2_match_data* match_data() {
  thread_local MatchData m;
  return m.md;
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& origin) {
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  if (c == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw_input("{}: regex '{}' does not compile at offset {}: {}", origin, pattern, off,
                reinterpret_cast<const char*>(msg));
  }
  auto code = std::make_shared<Code>();
  code->code = c;
  code->jit = pcre2_jit_compile(c, PCRE2_JIT_COMPLETE) == 0;
  code_ = std::move(code);
}

// Every ASCII non-alphanumeric escaped (\Q...\E would end at a "\E" inside).
// An empty literal matches the empty string at every position, as in HF.
Regex Regex::literal(std::string_view literal, const std::string& origin) {
  std::string p;
  for (char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) p += '\\';
    p += c;
  }
  return Regex(p, origin);
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view s) const {
  std::vector<std::pair<size_t, size_t>> out;
  pcre2_match_data* md = match_data();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  while (pos <= s.size()) {
    int rc = code_->jit ? pcre2_jit_match(code_->code, subject, s.size(), pos, PCRE2_NO_UTF_CHECK,
                                          md, nullptr)
                        : PCRE2_ERROR_JIT_STACKLIMIT;
    // Without JIT, or past the JIT's stack: the interpreter (heap-backed).
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
      rc = pcre2_match(code_->code, subject, s.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw_runtime("regex match failed (PCRE2 error {})", rc);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    out.emplace_back(ov[0], ov[1]);
    if (ov[1] > ov[0]) {
      pos = ov[1];
    } else {
      if (ov[1] >= s.size()) break;
      pos = ov[1] + utf8_len(static_cast<unsigned char>(s[ov[1]]));
    }
  }
  return out;
}

}  // namespace kintsugi::tok
