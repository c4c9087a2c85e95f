#pragma once
// A Hugging Face tokenizer.json, encoded and decoded exactly as HF
// `tokenizers` does: BPE models (byte-level as GPT-2/Llama 3/Qwen, or
// SentencePiece-style with byte fallback as Llama 2/Mistral/Gemma), the
// normalizers, pre-tokenizers, post-processors and decoders those use, and
// added tokens. docs/tokenizers.md lists what is supported; anything else is
// an InputError naming the file and the component.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kintsugi {

class Tokenizer {
 public:
  // `path`: a model folder (its tokenizer.json, plus tokenizer_config.json's
  // add_bos_token / add_eos_token where present) or a tokenizer.json file.
  static Tokenizer load(const std::filesystem::path& path);
  // A parsed tokenizer.json; `origin` names it in errors. `config` is a
  // tokenizer_config.json (null: none).
  static Tokenizer from_json(const nlohmann::json& tokenizer, const std::string& origin,
                             const nlohmann::json& config = nullptr);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // HF's encode(text, add_special_tokens).ids. `text` must be valid UTF-8
  // (InputError otherwise). Safe to call from several threads.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
  // HF's decode(ids, skip_special_tokens); ids the tokenizer does not know are skipped.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;
  // Whether `id` is an added token marked special.
  bool is_special(int32_t id) const;
  // What encode(..., true) puts before and after the text's ids (the
  // post-processor's template; e.g. {BOS} and {} for Llama 2).
  const std::vector<int32_t>& prefix_ids() const;
  const std::vector<int32_t>& suffix_ids() const;
  // tokenizer_config.json's bos_token / eos_token ids (model folder only).
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  // 1 + the largest id of the model or of an added token.
  int32_t vocab_size() const;
  // HF's get_vocab(): every token of the model, then every added token (its
  // content as written in tokenizer.json), each group by ascending id.
  struct VocabEntry {
    std::string token;
    int32_t id;
    bool added;
  };
  std::vector<VocabEntry> vocab() const;

  struct Impl;  // opaque: src/tokenizer/tokenizer.cpp

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kintsugi
