// The tokenizer pipeline, in HF's order: added tokens split out of the raw
// text, normalizer on each remaining piece, added tokens matched again in the
// normalized pieces (normalized ones), pre-tokenizer, BPE, post-processor.
#include "kintsugi/tokenizer/tokenizer.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "added_tokens.hpp"
#include "bpe.hpp"
#include "components.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/common/input_file.hpp"
#include "kintsugi/io/utf8.hpp"

namespace kintsugi {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace tok;

struct Tokenizer::Impl {
  std::string origin;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Decoder> decoder;
  std::unique_ptr<Bpe> model;
  std::vector<AddedToken> added;
  std::unordered_map<int32_t, size_t> added_by_id;
  std::unordered_map<std::string, int32_t> added_by_content;
  std::unordered_set<std::string> special_contents;
  std::unique_ptr<AddedMatcher> raw_matcher, normalized_matcher;
  std::vector<int32_t> prefix, suffix;
  std::optional<int32_t> bos, eos;

  Pieces pieces(std::string_view text) const;
  std::optional<int32_t> find(std::string_view token) const;
};

namespace {

json read_json(const fs::path& p) {
  const std::string text = read_input_file(
      p, p.filename() == "tokenizer_config.json" ? "tokenizer_config.json" : "tokenizer.json",
      kMaxJsonFileBytes);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw_input("{}: not valid JSON: {}", p.string(), e.what());
  }
}

AddedToken added_token(const json& e, const std::string& origin) {
  AddedToken t;
  t.content = need_string(e, "content", origin, "added_tokens entry");
  const json& id = need(e, "id", origin, "added_tokens entry");
  if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
    throw_input("{}: added token '{}' has no valid id", origin, t.content);
  t.id = id.get<int32_t>();
  t.special = opt_bool(e, "special", false, origin, "added_tokens entry");
  t.normalized = opt_bool(e, "normalized", !t.special, origin, "added_tokens entry");
  t.lstrip = opt_bool(e, "lstrip", false, origin, "added_tokens entry");
  t.rstrip = opt_bool(e, "rstrip", false, origin, "added_tokens entry");
  t.single_word = opt_bool(e, "single_word", false, origin, "added_tokens entry");
  return t;
}

void load_added(Tokenizer::Impl& t, const json& j) {
  if (!j.contains("added_tokens") || j["added_tokens"].is_null()) return;
  if (!j["added_tokens"].is_array()) throw_input("{}: 'added_tokens' must be a list", t.origin);
  for (const auto& e : j["added_tokens"]) {
    AddedToken a = added_token(e, t.origin);
    a.decoded = a.normalized && t.normalizer ? t.normalizer->apply(a.content) : a.content;
    if (a.special) t.special_contents.insert(a.content);
    t.added_by_id[a.id] = t.added.size();
    t.added_by_content[a.content] = a.id;
    t.added.push_back(std::move(a));
  }
  // HF searches the special tokens first, then the others; each list split by
  // whether the token matches the raw or the normalized text.
  std::vector<const AddedToken*> raw, norm;
  std::vector<std::string> raw_p, norm_p;
  for (int pass = 0; pass < 2; ++pass)
    for (const auto& a : t.added) {
      if (a.special != (pass == 0)) continue;
      if (a.normalized) {
        norm.push_back(&a);
        norm_p.push_back(a.decoded);
      } else {
        raw.push_back(&a);
        raw_p.push_back(a.content);
      }
    }
  t.raw_matcher = std::make_unique<AddedMatcher>(raw, raw_p);
  t.normalized_matcher = std::make_unique<AddedMatcher>(norm, norm_p);
}

// The ids a post-processor adds before and after the sequence.
void load_post_processor(Tokenizer::Impl& t, const json& p) {
  if (p.is_null()) return;
  const std::string type = need_string(p, "type", t.origin, "post_processor");
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    const json& list = need(p, "processors", t.origin, "Sequence post_processor");
    if (!list.is_array())
      throw_input("{}: Sequence post_processor: 'processors' must be a list", t.origin);
    for (const auto& e : list) load_post_processor(t, e);
    return;
  }
  if (type != "TemplateProcessing")
    throw_input(
        "{}: post_processor '{}' is not supported (supported: TemplateProcessing, "
        "ByteLevel, Sequence)",
        t.origin, type);
  const json& single = need(p, "single", t.origin, "TemplateProcessing");
  const json& specials = need(p, "special_tokens", t.origin, "TemplateProcessing");
  if (!single.is_array()) throw_input("{}: TemplateProcessing: 'single' must be a list", t.origin);
  std::vector<int32_t> before, after;
  bool seen_a = false;
  for (const auto& item : single) {
    if (item.contains("Sequence")) {
      if (seen_a) throw_input("{}: TemplateProcessing: 'single' has two sequences", t.origin);
      seen_a = true;
      continue;
    }
    const std::string name = need_string(need(item, "SpecialToken", t.origin, "TemplateProcessing"),
                                         "id", t.origin, "TemplateProcessing special token");
    if (!specials.contains(name))
      throw_input("{}: TemplateProcessing: special token '{}' is not in special_tokens", t.origin,
                  name);
    const json& ids = need(specials[name], "ids", t.origin, "TemplateProcessing special token");
    for (const auto& id : ids) (seen_a ? after : before).push_back(id.get<int32_t>());
  }
  // A later processor wraps what the earlier ones produced.
  t.prefix.insert(t.prefix.begin(), before.begin(), before.end());
  t.suffix.insert(t.suffix.end(), after.begin(), after.end());
}

std::optional<std::string> config_token(const json& c, const char* key) {
  if (!c.contains(key)) return std::nullopt;
  const json& v = c[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

// tokenizer_config.json: bos/eos ids, and add_bos_token / add_eos_token,
// which (as transformers' Llama and Gemma tokenizers do) decide what goes
// before / after the text instead of the template, side by side.
void apply_config(Tokenizer::Impl& t, const json& c, const std::string& origin) {
  if (!c.is_object()) return;
  auto id_of = [&](const char* key) -> std::optional<int32_t> {
    const auto tok = config_token(c, key);
    if (!tok) return std::nullopt;
    const auto id = t.find(*tok);
    if (!id) throw_input("{}: {} '{}' is not a token of the tokenizer", origin, key, *tok);
    return id;
  };
  t.bos = id_of("bos_token");
  t.eos = id_of("eos_token");
  auto side = [&](const char* flag, const std::optional<int32_t>& id, const char* key,
                  std::vector<int32_t>& ids) {
    if (!c.contains(flag) || !c[flag].is_boolean()) return;
    ids.clear();
    if (!c[flag].get<bool>()) return;
    if (!id) throw_input("{}: {} is true but {} is not set", origin, flag, key);
    ids.push_back(*id);
  };
  side("add_bos_token", t.bos, "bos_token", t.prefix);
  side("add_eos_token", t.eos, "eos_token", t.suffix);
}

void check_unsupported(const json& j, const std::string& origin) {
  for (const char* k : {"truncation", "padding"})
    if (j.contains(k) && !j[k].is_null())
      throw_input("{}: '{}' is set; only tokenizers without {} are supported", origin, k, k);
}

}  // namespace

std::optional<int32_t> Tokenizer::Impl::find(std::string_view token) const {
  const auto it = added_by_content.find(std::string(token));
  if (it != added_by_content.end()) return it->second;
  return model->token_to_id(token);
}

Pieces Tokenizer::Impl::pieces(std::string_view text) const {
  Pieces out;
  for (const auto& s : raw_matcher->split(text)) {
    if (s.id >= 0) {
      out.push_back({std::string(text.substr(s.a, s.b - s.a)), s.id, s.a == 0});
      continue;
    }
    if (s.b == s.a) continue;
    std::string norm(text.substr(s.a, s.b - s.a));
    bool at_start = s.a == 0;
    if (normalizer) norm = normalizer->apply(std::move(norm), at_start);
    if (normalized_matcher->empty()) {
      if (!norm.empty()) out.push_back({std::move(norm), -1, at_start});
      continue;
    }
    for (const auto& n : normalized_matcher->split(norm))
      if (n.b > n.a) out.push_back({norm.substr(n.a, n.b - n.a), n.id, at_start && n.a == 0});
  }
  return out;
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_json(const json& j, const std::string& origin, const json& config) {
  if (!j.is_object())
    throw_input("{}: not a tokenizer.json (the top level is not an object)", origin);
  auto t = std::make_unique<Impl>();
  t->origin = origin;
  // Each section is read under its key, so that a value of the wrong JSON type
  // anywhere inside it is one line naming the file and the key.
  const auto section = [&](const char* key, const std::string& file, const auto& read) {
    try {
      read();
    } catch (const json::exception& e) {
      throw_input("{}: key '{}': wrong JSON type: {}", file, key, json_problem(e.what()));
    }
  };
  section("(top level)", origin, [&] { check_unsupported(j, origin); });
  section("model", origin,
          [&] { t->model = std::make_unique<Bpe>(need(j, "model", origin, "tokenizer"), origin); });
  section("normalizer", origin,
          [&] { t->normalizer = make_normalizer(j.value("normalizer", json()), origin); });
  section("pre_tokenizer", origin,
          [&] { t->pre_tokenizer = make_pre_tokenizer(j.value("pre_tokenizer", json()), origin); });
  section("decoder", origin,
          [&] { t->decoder = make_decoder(j.value("decoder", json()), origin); });
  section("added_tokens", origin, [&] { load_added(*t, j); });
  if (!t->raw_matcher) {
    t->raw_matcher = std::make_unique<AddedMatcher>(std::vector<const AddedToken*>{},
                                                    std::vector<std::string>{});
    t->normalized_matcher = std::make_unique<AddedMatcher>(std::vector<const AddedToken*>{},
                                                           std::vector<std::string>{});
  }
  section("post_processor", origin,
          [&] { load_post_processor(*t, j.value("post_processor", json())); });
  section("(tokenizer_config.json)", origin + " (with tokenizer_config.json)",
          [&] { apply_config(*t, config, origin); });
  return Tokenizer(std::move(t));
}

Tokenizer Tokenizer::load(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path tj = path / "tokenizer.json", tc = path / "tokenizer_config.json";
    if (!fs::exists(tj, ec)) throw_input("{}: no tokenizer.json in this folder", path.string());
    const json config = fs::exists(tc, ec) ? read_json(tc) : json();
    return from_json(read_json(tj), tj.string(), config);
  }
  if (!fs::exists(path, ec)) throw_input("{}: no such file or folder", path.string());
  return from_json(read_json(path), path.string());
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (const auto bad = first_invalid_utf8(text))
    throw_input("text to encode is not valid UTF-8 (byte {})", *bad);
  Pieces pieces = impl_->pieces(text);
  if (impl_->pre_tokenizer) impl_->pre_tokenizer->apply(pieces);
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = impl_->prefix;
  ids.reserve(text.size() / 3 + 8);
  for (const auto& p : pieces) {
    if (p.id >= 0)
      ids.push_back(p.id);
    else
      impl_->model->encode(p.text, ids);
  }
  if (add_special_tokens) ids.insert(ids.end(), impl_->suffix.begin(), impl_->suffix.end());
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  // As HF: a token (added or not) is left out when its text is a special token's.
  for (const int32_t id : ids) {
    const auto a = impl_->added_by_id.find(id);
    const std::string* t = a != impl_->added_by_id.end() ? &impl_->added[a->second].decoded
                                                         : impl_->model->id_to_token(id);
    if (t == nullptr) continue;
    if (skip_special_tokens && impl_->special_contents.count(*t)) continue;
    tokens.push_back(*t);
  }
  if (!impl_->decoder) {
    std::string out;
    for (size_t k = 0; k < tokens.size(); ++k) out += (k ? " " : "") + tokens[k];
    return out;
  }
  impl_->decoder->apply(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  return impl_->find(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  const auto a = impl_->added_by_id.find(id);
  if (a != impl_->added_by_id.end()) return impl_->added[a->second].decoded;
  if (const std::string* t = impl_->model->id_to_token(id)) return *t;
  return std::nullopt;
}

std::vector<Tokenizer::VocabEntry> Tokenizer::vocab() const {
  std::vector<VocabEntry> out;
  for (int32_t id = 0; id <= impl_->model->max_id(); ++id)
    if (const std::string* t = impl_->model->id_to_token(id); t && !t->empty())
      out.push_back({*t, id, false});
  std::vector<VocabEntry> added;
  for (const auto& a : impl_->added) added.push_back({a.content, a.id, true});
  std::stable_sort(added.begin(), added.end(),
                   [](const VocabEntry& x, const VocabEntry& y) { return x.id < y.id; });
  out.insert(out.end(), added.begin(), added.end());
  return out;
}

bool Tokenizer::is_special(int32_t id) const {
  const auto a = impl_->added_by_id.find(id);
  return a != impl_->added_by_id.end() && impl_->added[a->second].special;
}

const std::vector<int32_t>& Tokenizer::prefix_ids() const {
  return impl_->prefix;
}
const std::vector<int32_t>& Tokenizer::suffix_ids() const {
  return impl_->suffix;
}
std::optional<int32_t> Tokenizer::bos_id() const {
  return impl_->bos;
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return impl_->eos;
}

int32_t Tokenizer::vocab_size() const {
  int32_t m = impl_->model->max_id();
  for (const auto& a : impl_->added) m = std::max(m, a.id);
  return m + 1;
}

}  // namespace kintsugi
