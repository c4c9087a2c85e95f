#pragma once
// The byte-level tokenizer of the demo pool, read from an HF tokenizer.json:
// model type BPE with no merges, a vocabulary that maps the GPT-2
// byte-to-unicode character of every byte b to id b, a ByteLevel pre-tokenizer
// (no prefix space) and decoder, and special tokens (e.g. <bos>, <eos>) with ids
// from 256 on. Anything else (merges, another model type, a normalizer, a
// vocabulary that disagrees with the byte table) is an InputError naming the file.
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kintsugi {

class ByteTokenizer {
 public:
  static ByteTokenizer load(const std::filesystem::path& tokenizer_json);
  static ByteTokenizer from_json(const nlohmann::json& j, const std::string& origin);

  // One id per byte.
  std::vector<int32_t> encode(std::string_view text) const;
  // Bytes of the non-special ids (special tokens are dropped).
  std::string decode(std::span<const int32_t> ids) const;
  int32_t vocab_size() const { return vocab_size_; }
  // id of a special token by its text, -1 when absent.
  int32_t special_id(const std::string& content) const;
  const std::map<int32_t, std::string>& specials() const { return specials_; }

 private:
  int32_t vocab_size_ = 256;
  std::map<int32_t, std::string> specials_;
};

// GPT-2's byte-to-unicode table: the character (UTF-8) standing for byte b.
const std::vector<std::string>& byte_to_unicode();

}  // namespace kintsugi
