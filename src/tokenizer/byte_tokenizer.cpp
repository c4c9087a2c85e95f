#include "kintsugi/tokenizer/byte_tokenizer.hpp"

#include <fstream>
#include <sstream>

#include "kintsugi/common/error.hpp"

namespace kintsugi {

namespace {

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

std::string type_of(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "";
  const auto& v = j[key];
  if (v.is_object() && v.contains("type") && v["type"].is_string())
    return v["type"].get<std::string>();
  return "?";
}

}  // namespace

const std::vector<std::string>& byte_to_unicode() {
  static const std::vector<std::string> table = [] {
    std::vector<uint32_t> cp(256, 0);
    std::vector<bool> printable(256, false);
    for (uint32_t b = '!'; b <= '~'; ++b) printable[b] = true;
    for (uint32_t b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
    for (uint32_t b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) cp[b] = printable[b] ? b : 256 + n++;
    std::vector<std::string> t(256);
    for (uint32_t b = 0; b < 256; ++b) t[b] = utf8(cp[b]);
    return t;
  }();
  return table;
}

ByteTokenizer ByteTokenizer::load(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input("{}: cannot open the tokenizer file", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) throw_input("{}: not valid JSON", path.string());
  return from_json(j, path.string());
}

ByteTokenizer ByteTokenizer::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    throw_input("{}: no 'model' object (an HF tokenizer.json expected)", origin);
  const auto& m = j["model"];
  const std::string mtype = m.value("type", std::string("?"));
  if (mtype != "BPE")
    throw_input("{}: model type '{}' is not supported (only a byte-level BPE with no merges)",
                origin, mtype);
  if (m.contains("merges") && !(m["merges"].is_array() && m["merges"].empty()))
    throw_input("{}: BPE merges are not supported (only the byte-level vocabulary)", origin);
  if (!type_of(j, "normalizer").empty())
    throw_input("{}: normalizer '{}' is not supported", origin, type_of(j, "normalizer"));
  const std::string pre = type_of(j, "pre_tokenizer");
  if (pre != "ByteLevel")
    throw_input("{}: pre_tokenizer '{}' is not supported (ByteLevel expected)", origin, pre);
  if (j["pre_tokenizer"].value("add_prefix_space", false))
    throw_input("{}: pre_tokenizer add_prefix_space: true is not supported", origin);
  const std::string dec = type_of(j, "decoder");
  if (!dec.empty() && dec != "ByteLevel")
    throw_input("{}: decoder '{}' is not supported (ByteLevel expected)", origin, dec);

  ByteTokenizer t;
  if (j.contains("added_tokens")) {
    if (!j["added_tokens"].is_array()) throw_input("{}: 'added_tokens' must be a list", origin);
    for (const auto& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          !a.contains("content") || !a["content"].is_string())
        throw_input("{}: an added token needs an integer 'id' and a string 'content'", origin);
      const int64_t id = a["id"].get<int64_t>();
      if (id < 256 || id > 1'000'000)
        throw_input("{}: added token '{}' has id {}; ids 0..255 are the bytes", origin,
                    a["content"].get<std::string>(), id);
      t.specials_[static_cast<int32_t>(id)] = a["content"].get<std::string>();
    }
  }
  if (!m.contains("vocab") || !m["vocab"].is_object())
    throw_input("{}: model.vocab must be an object", origin);
  const auto& table = byte_to_unicode();
  std::map<std::string, uint32_t> want;
  for (uint32_t b = 0; b < 256; ++b) want[table[b]] = b;
  size_t bytes_seen = 0;
  for (const auto& [tok, idv] : m["vocab"].items()) {
    if (!idv.is_number_integer())
      throw_input("{}: vocab entry '{}' has no integer id", origin, tok);
    const int64_t id = idv.get<int64_t>();
    auto it = want.find(tok);
    if (it != want.end()) {
      if (id != static_cast<int64_t>(it->second))
        throw_input("{}: vocab maps the character for byte {} to id {} (expected {})", origin,
                    it->second, id, it->second);
      ++bytes_seen;
      continue;
    }
    auto sp = t.specials_.find(static_cast<int32_t>(id));
    if (id >= 256 && sp != t.specials_.end() && sp->second == tok) continue;
    throw_input("{}: vocab entry '{}' (id {}) is neither a byte nor an added token", origin, tok,
                id);
  }
  if (bytes_seen != 256) throw_input("{}: vocab covers {} of the 256 bytes", origin, bytes_seen);
  t.vocab_size_ = 256;
  for (const auto& [id, content] : t.specials_) t.vocab_size_ = std::max(t.vocab_size_, id + 1);
  return t;
}

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(std::span<const int32_t> ids) const {
  std::string s;
  s.reserve(ids.size());
  for (int32_t id : ids)
    if (id >= 0 && id < 256) s += static_cast<char>(static_cast<unsigned char>(id));
  return s;
}

int32_t ByteTokenizer::special_id(const std::string& content) const {
  for (const auto& [id, c] : specials_)
    if (c == content) return id;
  return -1;
}

}  // namespace kintsugi
