#pragma once
// Unicode helpers for the tokenizer, each with the semantics of the Rust
// function Hugging Face `tokenizers` uses (named at each declaration), so the
// components built on them give HF's ids. Inputs are valid UTF-8.
#include <cstdint>
#include <string>
#include <string_view>

namespace kintsugi::tok {

// The code point starting at s[i]; advances i past it.
char32_t next_code_point(std::string_view s, size_t& i);
void append_utf8(std::string& out, char32_t c);
// Byte length of the UTF-8 sequence starting with lead byte b.
inline size_t utf8_len(unsigned char b) {
  return b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
}

// char::is_whitespace (Unicode White_Space).
bool is_whitespace(char32_t c);
// char::is_numeric (general categories Nd, Nl, No).
bool is_numeric(char32_t c);
// HF's is_punc: char::is_ascii_punctuation or a P* general category.
bool is_punctuation(char32_t c);
// The regex crate's \w: Alphabetic, M*, Nd, Pc, Join_Control.
bool is_word_char(char32_t c);

// String::from_utf8_lossy: each maximal invalid subpart becomes U+FFFD.
std::string utf8_lossy(std::string_view bytes);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
std::string normalize(std::string_view s, NormalForm form);
// Each character's char::to_lowercase, one character at a time (no
// context-dependent rules such as a final sigma), as NormalizedString::lowercase.
std::string lowercase(std::string_view s);

}  // namespace kintsugi::tok
