#include "bpe.hpp"

#include <fmt/format.h>

#include <queue>

#include "components.hpp"
#include "kintsugi/common/error.hpp"
#include "text.hpp"

namespace kintsugi::tok {

using nlohmann::json;

namespace {

// HF's cache holds 10,000 words; words this long are rare and not worth keeping.
constexpr size_t kCacheWords = 10000;
constexpr size_t kCacheMaxBytes = 256;

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

std::optional<std::string> opt_string(const json& m, const char* key, const std::string& origin) {
  if (!m.contains(key) || m[key].is_null()) return std::nullopt;
  if (!m[key].is_string()) throw_input("{}: model: '{}' must be a string", origin, key);
  return m[key].get<std::string>();
}

// A merge as "a b" (split at the first space) or ["a", "b"].
std::pair<std::string, std::string> merge_parts(const json& e, size_t k,
                                                const std::string& origin) {
  if (e.is_string()) {
    const std::string s = e.get<std::string>();
    const size_t sp = s.find(' ');
    if (sp == std::string::npos)
      throw_input("{}: model: merge {} '{}' is not two tokens separated by a space", origin, k, s);
    return {s.substr(0, sp), s.substr(sp + 1)};
  }
  if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string())
    return {e[0].get<std::string>(), e[1].get<std::string>()};
  throw_input("{}: model: merge {} must be \"a b\" or [\"a\", \"b\"]", origin, k);
}

}  // namespace

Bpe::Bpe(const json& m, const std::string& origin) {
  const std::string type = m.is_object() && m.contains("type") && m["type"].is_string()
                               ? m["type"].get<std::string>()
                               : std::string("BPE");
  if (type != "BPE")
    throw_input("{}: model '{}' is not supported (only BPE models are)", origin, type);
  if (m.contains("dropout") && !m["dropout"].is_null() &&
      !(m["dropout"].is_number() && m["dropout"].get<double>() == 0.0))
    throw_input("{}: model: BPE dropout ({}) is not supported (it makes encoding random)", origin,
                m["dropout"].dump());
  const json& vocab = need(m, "vocab", origin, "model");
  if (!vocab.is_object()) throw_input("{}: model: 'vocab' must be an object", origin);
  int32_t max_id = -1;
  vocab_.reserve(vocab.size());
  for (const auto& [tok, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      throw_input("{}: model: vocab entry '{}' has no valid id", origin, tok);
    const auto i = id.get<int32_t>();
    vocab_.emplace(tok, i);
    max_id = std::max(max_id, i);
  }
  tokens_.resize(static_cast<size_t>(max_id + 1));
  for (const auto& [tok, id] : vocab_) tokens_[static_cast<size_t>(id)] = tok;

  prefix_ = opt_string(m, "continuing_subword_prefix", origin).value_or("");
  suffix_ = opt_string(m, "end_of_word_suffix", origin).value_or("");
  fuse_unk_ = opt_bool(m, "fuse_unk", false, origin, "model");
  byte_fallback_ = opt_bool(m, "byte_fallback", false, origin, "model");
  ignore_merges_ = opt_bool(m, "ignore_merges", false, origin, "model");
  if (const auto unk = opt_string(m, "unk_token", origin)) {
    const auto it = vocab_.find(*unk);
    if (it == vocab_.end())
      throw_input("{}: model: unk_token '{}' is not in the vocab", origin, *unk);
    unk_ = it->second;
  }
  byte_ids_.assign(256, -1);
  for (int b = 0; b < 256; ++b)
    if (const auto id = token_to_id(fmt::format("<0x{:02X}>", b)))
      byte_ids_[static_cast<size_t>(b)] = *id;

  static const json no_merges = json::array();
  const json& merges = m.contains("merges") ? m["merges"] : no_merges;  // no copy
  if (!merges.is_array()) throw_input("{}: model: 'merges' must be a list", origin);
  merges_.reserve(merges.size());
  for (size_t k = 0; k < merges.size(); ++k) {
    const auto [a, b] = merge_parts(merges[k], k, origin);
    const auto ia = token_to_id(a), ib = token_to_id(b);
    const std::string joined = a + b.substr(std::min(prefix_.size(), b.size()));
    const auto ij = token_to_id(joined);
    if (!ia || !ib || !ij)
      throw_input("{}: model: merge {} ('{}' '{}'): '{}' is not in the vocab", origin, k, a, b,
                  !ia   ? a
                  : !ib ? b
                        : joined);
    // A repeated pair takes its last rank, as HF's map built from the list does.
    merges_[pair_key(*ia, *ib)] = {static_cast<int32_t>(k), *ij};
  }
}

std::optional<int32_t> Bpe::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) return nullptr;
  const std::string& t = tokens_[static_cast<size_t>(id)];
  return t.empty() ? nullptr : &t;
}

const Bpe::Merge* Bpe::find_merge(int32_t a, int32_t b) const {
  const auto it = merges_.find(pair_key(a, b));
  return it == merges_.end() ? nullptr : &it->second;
}

void Bpe::encode(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_)
    if (const auto id = token_to_id(word)) {
      out.push_back(*id);
      return;
    }
  // Words repeat (Zipf): the cache makes the common ones a single lookup.
  if (word.size() <= kCacheMaxBytes) {
    std::lock_guard lock(cache_mutex_);
    const auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t mark = out.size();
  merge_word(word, out);
  if (word.size() <= kCacheMaxBytes) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() < kCacheWords)
      cache_.emplace(std::string(word),
                     std::vector<int32_t>(out.begin() + static_cast<long>(mark), out.end()));
  }
}

// One symbol per character (prefix on all but the first, suffix on the last);
// a character outside the vocab becomes its <0xXX> bytes (byte_fallback) or
// the unknown token (fused into the previous one with fuse_unk), or is dropped
// when the model has no unknown token, as HF does.
void Bpe::initial_symbols(std::string_view w, std::vector<int32_t>& ids,
                          std::vector<uint32_t>& lens) const {
  std::optional<std::pair<int32_t, uint32_t>> unk;  // pending unknown: id, bytes
  std::string s;
  for (size_t i = 0; i < w.size();) {
    const size_t a = i;
    i += utf8_len(static_cast<unsigned char>(w[i]));
    const bool first = a == 0, last = i >= w.size();
    std::string_view ch = w.substr(a, i - a);
    if ((!first && !prefix_.empty()) || (last && !suffix_.empty())) {
      s.assign(first ? "" : prefix_).append(ch).append(last ? suffix_ : "");
      ch = s;
    }
    const auto len = static_cast<uint32_t>(i - a);
    if (const auto id = token_to_id(ch)) {
      if (unk) ids.push_back(unk->first), lens.push_back(unk->second), unk.reset();
      ids.push_back(*id);
      lens.push_back(len);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : ch) all = all && byte_ids_[b] >= 0;
      if (all) {
        for (unsigned char b : ch) ids.push_back(byte_ids_[b]), lens.push_back(1);
        continue;
      }
    }
    if (!unk_) continue;
    if (unk && fuse_unk_) {
      unk->second += len;
    } else {
      if (unk) ids.push_back(unk->first), lens.push_back(unk->second);
      unk = std::make_pair(*unk_, len);
    }
  }
  if (unk) ids.push_back(unk->first), lens.push_back(unk->second);
}

// The merge loop. A min-heap of candidate merges keyed by (rank, position)
// with lazy invalidation over a doubly linked list of symbols: each merge is
// O(log n), so a word of n symbols costs O(n log n) instead of the O(n^2) of
// rescanning every pair after each merge -- long pieces (a SentencePiece-style
// tokenizer sees whole lines as one word) stay fast. Ties in rank go to the
// leftmost pair, and a popped entry whose pair no longer produces its token is
// stale and skipped: the same order HF's Word::merge_all applies, so the ids
// are the same.
void Bpe::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<int32_t> id;
  std::vector<uint32_t> len;
  initial_symbols(word, id, len);
  const auto n = static_cast<int32_t>(id.size());
  std::vector<int32_t> prev(id.size()), next(id.size());
  for (int32_t k = 0; k < n; ++k) prev[k] = k - 1, next[k] = k + 1 < n ? k + 1 : -1;

  struct Cand {
    int32_t rank, pos, id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Cand> heap_store;
  heap_store.reserve(id.size());
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap(std::greater<>{},
                                                                    std::move(heap_store));
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    if (const Merge* m = find_merge(id[pos], id[next[pos]])) heap.push({m->rank, pos, m->id});
  };
  for (int32_t k = 0; k + 1 < n; ++k) push(k);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    if (len[c.pos] == 0 || next[c.pos] < 0) continue;
    const int32_t r = next[c.pos];
    const Merge* m = find_merge(id[c.pos], id[r]);
    if (m == nullptr || m->id != c.id) continue;
    id[c.pos] = c.id;
    len[c.pos] += len[r];
    len[r] = 0;
    next[c.pos] = next[r];
    if (next[r] >= 0) prev[next[r]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  for (int32_t k = 0; k < n; ++k)
    if (len[k] != 0) out.push_back(id[k]);
}

}  // namespace kintsugi::tok
