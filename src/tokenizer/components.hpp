#pragma once
// The pipeline stages of an HF tokenizer.json, each built from its JSON node:
// normalizers (text -> text), pre-tokenizers (pieces -> pieces) and decoders
// (tokens -> tokens). An unsupported or malformed node is an InputError naming
// the file (`origin`) and the component.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kintsugi/common/error.hpp"

namespace kintsugi::tok {

// A slice of the input on its way to the model. `id` >= 0 marks an added
// token, already final; `at_start` says the slice begins at offset 0 of the
// original text (Metaspace's prepend_scheme "first" needs it).
struct Piece {
  std::string text;
  int32_t id = -1;
  bool at_start = false;
};
using Pieces = std::vector<Piece>;

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // `at_start` is cleared when the result's first character no longer comes
  // from offset 0 of the input (HF's alignments: a multi-character
  // replacement at the start aligns to the last character it replaces; a
  // stripped prefix moves the start), which Metaspace's "first" looks at.
  virtual std::string apply(std::string s, bool& at_start) const = 0;
  std::string apply(std::string s) const {
    bool unused = true;
    return apply(std::move(s), unused);
  }
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and may rewrite) the pieces with id < 0; drops empty ones.
  virtual void apply(Pieces& pieces) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void apply(std::vector<std::string>& tokens) const = 0;
};

// null JSON -> nullptr (no such stage).
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& origin);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j,
                                                 const std::string& origin);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& origin);

// GPT-2's byte <-> character table of the ByteLevel components: the UTF-8 of
// the character standing for byte b, and the byte of a code point (-1: none).
const std::string& byte_char(unsigned char b);
int char_byte(char32_t c);

class Regex;
// A Replace or Split node's {"String": s} / {"Regex": r} pattern.
Regex pattern_of(const nlohmann::json& j, const std::string& origin, const char* what);
// `s` with every match of `re` replaced by `content`.
std::string replace_all(const Regex& re, const std::string& s, const std::string& content);

// JSON access that reports a missing or mistyped key as an InputError.
const nlohmann::json& need(const nlohmann::json& j, const char* key, const std::string& origin,
                           const char* what);
std::string need_string(const nlohmann::json& j, const char* key, const std::string& origin,
                        const char* what);
bool opt_bool(const nlohmann::json& j, const char* key, bool dflt, const std::string& origin,
              const char* what);

// The parts of a Sequence node (normalizer, pre-tokenizer or decoder): each
// entry of the list under `key` made by `make(entry, origin)`; a part that
// does nothing (null) is dropped.
template <typename T, typename Make>
std::vector<std::unique_ptr<T>> sequence_parts(const nlohmann::json& j, const char* key,
                                               const std::string& origin, const char* what,
                                               Make make) {
  const nlohmann::json& list = need(j, key, origin, what);
  if (!list.is_array()) throw_input("{}: {}: '{}' must be a list", origin, what, key);
  std::vector<std::unique_ptr<T>> parts;
  for (const auto& e : list)
    if (auto p = make(e, origin)) parts.push_back(std::move(p));
  return parts;
}

}  // namespace kintsugi::tok
