// mergekit's tokenizer reconciliation (see vocab.hpp): the output vocabulary,
// each member's row of every output token, the fill rules, and the output's
// tokenizer files. Every rank computes the same plan on its own.
#include "kintsugi/pool/vocab.hpp"

#include <spdlog/spdlog.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <new>
#include <set>
#include <unordered_map>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/input_file.hpp"
#include "kintsugi/kernels/element_ops.hpp"
#include "kintsugi/pool/pool.hpp"
#include "kintsugi/tokenizer/tokenizer.hpp"

namespace kintsugi {
namespace fs = std::filesystem;
using nlohmann::json;

namespace vocab_detail {

json read_json_file(const fs::path& p, std::string_view what) {
  const std::string text = read_input_file(p, what, kMaxJsonFileBytes);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw_input("{}: not valid JSON: {}", p.string(), e.what());
  }
}

// One member's vocabulary as mergekit sees it: HF's get_vocab() without the
// ids at or past the model's vocab_size (config.json; padding rows carry no token).
struct MemberVocab {
  bool own = false;  // false: no tokenizer.json, the base's is assumed (as mergekit)
  json tokenizer_json, tokenizer_config;
  std::vector<Tokenizer::VocabEntry> entries;        // all of get_vocab(), ascending id per group
  std::unordered_map<std::string, int64_t> ids;      // usable tokens (id < limit)
  std::unordered_map<std::string, int64_t> all_ids;  // every token (tokens: rules)
  std::unordered_map<std::string, size_t> added_entry;  // content -> index in added_tokens
  int64_t limit = 0;                                    // rows that carry tokens
};

int64_t vocab_rows(const HfCheckpoint& c) {
  for (const auto& n : c.tensor_names())
    if (is_vocab_tensor(n) && !c.info(n).shape.empty()) return c.info(n).shape[0];
  return 0;
}

MemberVocab read_member(const HfCheckpoint& c) {
  MemberVocab v;
  const fs::path dir = fs::is_directory(c.path()) ? c.path() : c.path().parent_path();
  const fs::path tj = dir / "tokenizer.json";
  std::error_code ec;
  if (!fs::is_regular_file(tj, ec)) return v;
  v.own = true;
  v.tokenizer_json = read_json_file(tj, "tokenizer.json");
  const fs::path tc = dir / "tokenizer_config.json";
  if (fs::is_regular_file(tc, ec)) v.tokenizer_config = read_json_file(tc, "tokenizer_config.json");
  const Tokenizer tok = Tokenizer::from_json(v.tokenizer_json, tj.string(), v.tokenizer_config);
  v.entries = tok.vocab();
  const int64_t rows = vocab_rows(c);
  v.limit = rows;
  const auto& cfg = c.config();
  if (cfg.is_object() && cfg.contains("vocab_size") && cfg["vocab_size"].is_number_integer())
    v.limit = std::min<int64_t>(rows, cfg["vocab_size"].get<int64_t>());
  for (const auto& e : v.entries) {
    v.all_ids[e.token] = e.id;  // added tokens come last: their id wins, as in get_vocab()
    if (e.id < v.limit)
      v.ids[e.token] = e.id;
    else
      v.ids.erase(e.token);
  }
  if (v.tokenizer_json.contains("added_tokens") && v.tokenizer_json["added_tokens"].is_array()) {
    const json& a = v.tokenizer_json["added_tokens"];
    for (size_t i = 0; i < a.size(); ++i)
      v.added_entry.emplace(a[i]["content"].get<std::string>(), i);
  }
  return v;
}

// mergekit strips a tokenizer of the tokens at or past vocab_size (BPE only).
bool strip_json(json& tj, int64_t limit, const std::string& origin) {
  bool changed = false;
  json& model = tj["model"];
  std::set<std::string> gone;
  if (model.contains("vocab") && model["vocab"].is_object()) {
    for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it)
      if (it.value().is_number_integer() && it.value().get<int64_t>() >= limit)
        gone.insert(it.key());
  }
  if (!gone.empty()) {
    if (!model.contains("type") || model["type"] != "BPE")
      throw_input("{}: tokens at or past vocab_size {} can only be dropped from a BPE tokenizer",
                  origin, limit);
    for (const auto& t : gone) model["vocab"].erase(t);
    if (model.contains("merges") && model["merges"].is_array()) {
      json kept = json::array();
      for (const auto& m : model["merges"]) {
        std::vector<std::string> parts;
        if (m.is_string()) {
          const std::string s = m.get<std::string>();
          const size_t sp = s.find(' ');
          parts = {s.substr(0, sp), sp == std::string::npos ? "" : s.substr(sp + 1)};
        } else if (m.is_array()) {
          for (const auto& p : m) parts.push_back(p.get<std::string>());
        }
        if (std::none_of(parts.begin(), parts.end(),
                         [&](const std::string& p) { return gone.count(p) > 0; }))
          kept.push_back(m);
      }
      model["merges"] = std::move(kept);
    }
    changed = true;
  }
  if (tj.contains("added_tokens") && tj["added_tokens"].is_array()) {
    json kept = json::array();
    for (const auto& e : tj["added_tokens"])
      if (e["id"].get<int64_t>() < limit) kept.push_back(e);
    if (kept.size() != tj["added_tokens"].size()) changed = true;
    tj["added_tokens"] = std::move(kept);
  }
  return changed;
}

json plain_added_token(const std::string& content, int64_t id) {
  // transformers' add_tokens(str): not special, normalized.
  return json{{"id", id},        {"content", content}, {"single_word", false}, {"lstrip", false},
              {"rstrip", false}, {"normalized", true}, {"special", false}};
}

float load(const std::byte* p, DType d, uint64_t i) {
  if (d == DType::F32) {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return d == DType::BF16 ? ops::bf16_to_f32(h) : ops::f16_to_f32(h);
}

// x rounded to dtype d (torch's conversion), as fp32.
float round_to(float x, DType d) {
  if (d == DType::BF16) return ops::bf16_to_f32(ops::f32_to_bf16(x));
  if (d == DType::F16) return ops::f16_to_f32(ops::f32_to_f16(x));
  return x;
}

void store(std::byte* p, DType d, uint64_t i, float x) {
  if (d == DType::F32) {
    std::memcpy(p + 4 * i, &x, 4);
    return;
  }
  const uint16_t h = d == DType::BF16 ? ops::f32_to_bf16(x) : ops::f32_to_f16(x);
  std::memcpy(p + 2 * i, &h, 2);
}

}  // namespace vocab_detail

bool is_vocab_tensor(std::string_view name) {
  auto ends = [&](std::string_view s) {
    return name.size() >= s.size() && name.substr(name.size() - s.size()) == s;
  };
  return ends("embed_tokens.weight") || ends("lm_head.weight");
}

VocabPlan plan_vocab(std::span<const HfCheckpoint* const> members, const VocabSpec& spec) {
  using namespace vocab_detail;
  KS_CHECK(!members.empty(), "plan_vocab: no members");
  const size_t M = members.size();
  std::vector<MemberVocab> mv;
  for (const auto* c : members) mv.push_back(read_member(*c));
  if (!mv[0].own)
    throw_input("{}: no tokenizer.json: {} needs the base model's tokenizer",
                members[0]->path().string(), spec.where.empty() ? "tokenizer_source" : spec.where);
  for (size_t m = 1; m < M; ++m)
    if (!mv[m].own) {
      spdlog::warn("{}: no tokenizer.json; its vocabulary is taken to be the base's (as mergekit)",
                   members[m]->path().string());
      const int64_t limit = vocab_rows(*members[m]);
      mv[m].entries = mv[0].entries;
      mv[m].limit = limit;
      for (const auto& e : mv[m].entries) {
        mv[m].all_ids[e.token] = e.id;
        if (e.id < limit)
          mv[m].ids[e.token] = e.id;
        else
          mv[m].ids.erase(e.token);
      }
    }

  VocabPlan plan;
  // The output vocabulary: token -> id.
  std::map<int64_t, std::string> by_id;
  std::unordered_map<std::string, int64_t> out_ids;
  json& tj = plan.tokenizer_json;
  if (spec.source == VocabSpec::Source::Model) {
    const MemberVocab& src = mv[spec.model];
    if (!src.own)
      throw_input("{}: tokenizer source {} has no tokenizer.json", spec.where,
                  members[spec.model]->path().string());
    tj = src.tokenizer_json;
    plan.tokenizer_config = src.tokenizer_config;
    plan.tokenizer_folder = members[spec.model]->path();
    for (const auto& e : src.entries) out_ids[e.token] = e.id;
  } else {
    tj = mv[0].tokenizer_json;
    plan.tokenizer_config = mv[0].tokenizer_config;
    plan.tokenizer_folder = members[0]->path();
    plan.tokenizer_changed = strip_json(tj, mv[0].limit, members[0]->path().string());
    out_ids = mv[0].ids;
  }
  int64_t next = 0;
  for (const auto& [t, id] : out_ids) next = std::max(next, id + 1);
  auto add = [&](const std::string& token, json entry) {
    if (out_ids.count(token)) return;
    entry["id"] = next;
    out_ids[token] = next++;
    if (!tj.contains("added_tokens") || !tj["added_tokens"].is_array())
      tj["added_tokens"] = json::array();
    tj["added_tokens"].push_back(entry);
    if (plan.tokenizer_config.is_object() &&
        plan.tokenizer_config.contains("added_tokens_decoder") &&
        plan.tokenizer_config["added_tokens_decoder"].is_object()) {
      json d = entry;
      d.erase("id");
      plan.tokenizer_config["added_tokens_decoder"][std::to_string(entry["id"].get<int64_t>())] = d;
    }
    plan.tokenizer_changed = true;
    ++plan.added;
  };
  if (spec.source == VocabSpec::Source::Union) {
    // mergekit's union: the base's vocabulary, then every other member's
    // plain tokens it lacks, then their added tokens (first settings win);
    // members in recipe order, tokens by ascending id.
    std::set<std::string> added_anywhere;
    for (const auto& v : mv)
      for (const auto& e : v.entries)
        if (e.added && e.id < v.limit) added_anywhere.insert(e.token);
    for (size_t m = 1; m < M; ++m)
      for (const auto& e : mv[m].entries)
        if (!e.added && e.id < mv[m].limit && !added_anywhere.count(e.token))
          add(e.token, plain_added_token(e.token, 0));
    for (size_t m = 0; m < M; ++m)
      for (const auto& e : mv[m].entries) {
        if (!e.added || e.id >= mv[m].limit || out_ids.count(e.token)) continue;
        json entry = mv[m].own ? mv[m].tokenizer_json["added_tokens"][mv[m].added_entry.at(e.token)]
                               : plain_added_token(e.token, 0);
        add(e.token, entry);
      }
  }
  for (const auto& [token, rule] : spec.tokens) add(token, plain_added_token(token, 0));
  for (const auto& [t, id] : out_ids) by_id[id] = t;
  plan.vocab = next;
  plan.rows = plan.vocab;
  if (spec.pad_to_multiple_of > 0 && plan.rows % spec.pad_to_multiple_of)
    plan.rows = (plan.rows / spec.pad_to_multiple_of + 1) * spec.pad_to_multiple_of;

  // Each member's row of each output token.
  plan.perm.assign(M, std::vector<int64_t>(static_cast<size_t>(plan.vocab), -1));
  for (size_t m = 0; m < M; ++m)
    for (const auto& [id, token] : by_id) {
      auto it = mv[m].ids.find(token);
      if (it != mv[m].ids.end()) plan.perm[m][static_cast<size_t>(id)] = it->second;
    }

  // The `tokens:` rules, resolved to a member's row (mergekit's
  // compute_default_embedding), then each token's fill (assign_embedding_sources).
  std::unordered_map<std::string, const TokenRowRule*> rules;
  for (const auto& [token, rule] : spec.tokens) rules[token] = &rule;
  plan.rules.assign(static_cast<size_t>(plan.vocab), VocabPlan::Rule{});
  for (const auto& [id, token] : by_id) {
    auto r = rules.find(token);
    if (r == rules.end()) continue;
    const TokenRowRule& rule = *r->second;
    VocabPlan::Rule& pr = plan.rules[static_cast<size_t>(id)];
    pr.set = true;
    pr.fill.force = rule.force;
    pr.where = rule.where;
    switch (rule.kind) {
      case TokenRowRule::Kind::Zero:
        pr.fixed = true;
        pr.fill.kind = VocabPlan::Fill::Kind::Zero;
        break;
      case TokenRowRule::Kind::Model: {
        const int64_t row = plan.perm[rule.member][static_cast<size_t>(id)];
        if (row < 0)
          throw_input("{}: token {} is not in the vocabulary of {}", rule.where, json(token).dump(),
                      members[rule.member]->path().string());
        pr.fixed = true;
        pr.fill.kind = VocabPlan::Fill::Kind::Row;
        pr.fill.member = rule.member;
        pr.fill.row = row;
        break;
      }
      case TokenRowRule::Kind::ModelToken: {
        int64_t row = 0;
        if (rule.token_id) {
          row = *rule.token_id;
        } else {
          auto it = mv[rule.member].all_ids.find(rule.token);
          if (it == mv[rule.member].all_ids.end())
            throw_input("{}: token {} is not in the vocabulary of {}", rule.where,
                        json(rule.token).dump(), members[rule.member]->path().string());
          row = it->second;
        }
        if (row < 0 || row >= vocab_rows(*members[rule.member]))
          throw_input("{}: token id {} is outside the {} rows of {}", rule.where, row,
                      vocab_rows(*members[rule.member]), members[rule.member]->path().string());
        pr.fixed = true;
        pr.fill.kind = VocabPlan::Fill::Kind::Row;
        pr.fill.member = rule.member;
        pr.fill.row = row;
        break;
      }
      case TokenRowRule::Kind::Auto:
        break;
    }
  }
  for (const auto& [id, token] : by_id)
    if (fill_tokens(plan, static_cast<size_t>(id)) && !plan.rules[static_cast<size_t>(id)].set)
      spdlog::warn("token {} is in no model: its rows are zeros", json(token).dump());
  return plan;
}

bool fill_tokens(VocabPlan& plan, size_t id) {
  const size_t M = plan.perm.size();
  if (plan.fill.size() != static_cast<size_t>(plan.vocab))
    plan.fill.assign(static_cast<size_t>(plan.vocab), VocabPlan::Fill{});
  auto& f = plan.fill[id];
  f = VocabPlan::Fill{};
  size_t present = 0, donor = 0;
  for (size_t m = 0; m < M; ++m)
    if (plan.perm[m][id] >= 0) {
      if (present == 0) donor = m;
      ++present;
    }
  const VocabPlan::Rule& rule = plan.rules[id];
  if (rule.set) {
    f.force = rule.fill.force;
    if (rule.fixed) {
      f = rule.fill;
      return false;
    }
  }
  if (present == M) return false;  // Own
  if (present == 1) {
    f.kind = VocabPlan::Fill::Kind::Row;
    f.member = donor;
    f.row = plan.perm[donor][id];
  } else if (present == 0) {
    f.kind = VocabPlan::Fill::Kind::Zero;
    return true;
  } else if (plan.perm[0][id] >= 0) {
    f.kind = VocabPlan::Fill::Kind::Row;
    f.member = 0;
    f.row = plan.perm[0][id];
  } else {
    f.kind = VocabPlan::Fill::Kind::Average;
  }
  return false;
}

VocabPlan vocab_for_inputs(const VocabPlan& plan, std::span<const size_t> inputs,
                           std::span<const HfCheckpoint* const> members,
                           const std::string& tensor) {
  VocabPlan sub;
  sub.vocab = plan.vocab;
  sub.rows = plan.rows;
  for (size_t m : inputs) sub.perm.push_back(plan.perm.at(m));
  sub.rules = plan.rules;
  for (auto& r : sub.rules) {
    if (!r.fixed || r.fill.kind != VocabPlan::Fill::Kind::Row) continue;
    auto it = std::find(inputs.begin(), inputs.end(), r.fill.member);
    if (it == inputs.end())
      throw_input(
          "{}: the row of {} is not among the inputs of tensor {} (mergekit fills a token-indexed "
          "tensor from its own inputs)",
          r.where, members[r.fill.member]->path().string(), tensor);
    r.fill.member = static_cast<size_t>(it - inputs.begin());
  }
  int64_t zeros = 0;
  for (size_t id = 0; id < static_cast<size_t>(sub.vocab); ++id) {
    const bool anywhere = std::any_of(plan.perm.begin(), plan.perm.end(),
                                      [&](const std::vector<int64_t>& p) { return p[id] >= 0; });
    zeros += fill_tokens(sub, id) && !sub.rules[id].set && anywhere;
  }
  if (zeros > 0)
    spdlog::warn("tensor {}: tokens in none of its inputs: {} (their rows are zeros)", tensor,
                 zeros);
  return sub;
}

void check_pool_compatible_vocab(std::span<const HfCheckpoint* const> members) {
  std::vector<PoolDifference> diffs;
  for (auto& d : pool_differences(members))
    if (!is_vocab_tensor(d.tensor)) diffs.push_back(std::move(d));
  const HfCheckpoint& first = *members[0];
  for (const auto& n : first.tensor_names()) {
    if (!is_vocab_tensor(n)) continue;
    const TensorInfo& a = first.info(n);
    for (size_t k = 1; k < members.size(); ++k) {
      const HfCheckpoint& c = *members[k];
      const std::string path = c.path().string();
      if (!c.has(n)) {
        diffs.push_back({path, n, "missing here"});
        continue;
      }
      const TensorInfo& b = c.info(n);
      if (a.shape.size() != 2 || b.shape.size() != 2 || a.shape[1] != b.shape[1])
        diffs.push_back(
            {path, n,
             fmt::format("shape {} here, {} in {}: token-indexed tensors must be "
                         "[tokens, width] with the same width",
                         shape_text(b.shape), shape_text(a.shape), first.path().string())});
      else if (a.dtype != DType::BF16 && a.dtype != DType::F16 && a.dtype != DType::F32)
        diffs.push_back({first.path().string(), n,
                         fmt::format("dtype {}: token-indexed tensors must be bf16, f16 or f32 "
                                     "to be re-indexed",
                                     dtype_name(a.dtype))});
      else if (a.dtype != b.dtype)
        diffs.push_back({path, n,
                         fmt::format("dtype {} here, {} in {}", dtype_name(b.dtype),
                                     dtype_name(a.dtype), first.path().string())});
    }
  }
  for (size_t k = 1; k < members.size(); ++k)
    for (const auto& n : members[k]->tensor_names())
      if (is_vocab_tensor(n) && !first.has(n))
        diffs.push_back({first.path().string(), n, "missing here"});
  check_no_differences(diffs);
}

void reindex_vocab_tensor(const VocabPlan& plan, std::span<const HfCheckpoint* const> members,
                          size_t m, const std::string& name, DType dtype, ElementRange range,
                          std::byte* out) {
  using namespace vocab_detail;
  if (range.empty()) return;
  struct Src {
    const std::byte* p;
    DType d;
  };
  std::vector<Src> src;
  uint64_t width = 0;
  for (const auto* c : members) {
    const TensorInfo& info = c->info(name);
    src.push_back({c->file_of(name).bytes(info).data(), info.dtype});
    width = static_cast<uint64_t>(info.shape.at(1));
  }
  KS_CHECK(width > 0, "token-indexed tensor without width");
  std::vector<float> row(width), acc(width);
  // Member m's output row `id` (id < vocab), every column, in `dtype`.
  auto fill_row = [&](uint64_t id, float* r) {
    const VocabPlan::Fill& f = plan.fill[id];
    const int64_t own = plan.perm[m][id];
    auto copy = [&](size_t k, int64_t srow) {
      for (uint64_t j = 0; j < width; ++j)
        r[j] = round_to(load(src[k].p, src[k].d, static_cast<uint64_t>(srow) * width + j), dtype);
    };
    if (own >= 0 && !f.force) return copy(m, own);
    switch (f.kind) {
      case VocabPlan::Fill::Kind::Own:
      case VocabPlan::Fill::Kind::Zero:
        std::fill(r, r + width, 0.0f);
        return;
      case VocabPlan::Fill::Kind::Row:
        return copy(f.member, f.row);
      case VocabPlan::Fill::Kind::Average: {
        // mergekit: zeros, + each present member's row in order, / count,
        // each operation rounded to the working dtype.
        std::fill(r, r + width, 0.0f);
        int count = 0;
        for (size_t k = 0; k < members.size(); ++k) {
          const int64_t srow = plan.perm[k][id];
          if (srow < 0) continue;
          ++count;
          for (uint64_t j = 0; j < width; ++j) {
            const float x =
                round_to(load(src[k].p, src[k].d, static_cast<uint64_t>(srow) * width + j), dtype);
            r[j] = round_to(ops::add(r[j], x), dtype);
          }
        }
        for (uint64_t j = 0; j < width; ++j)
          r[j] = round_to(ops::div(r[j], static_cast<float>(count)), dtype);
        return;
      }
    }
  };
  // Padding rows: the mean of the vocabulary's rows (computed only when needed).
  std::vector<float> mean;
  const uint64_t first_row = range.begin / width, last_row = (range.end - 1) / width;
  if (static_cast<int64_t>(last_row) >= plan.vocab) {
    std::vector<double> sum(width, 0.0);
    for (int64_t id = 0; id < plan.vocab; ++id) {
      fill_row(static_cast<uint64_t>(id), row.data());
      for (uint64_t j = 0; j < width; ++j) sum[j] += static_cast<double>(row[j]);
    }
    mean.resize(width);
    for (uint64_t j = 0; j < width; ++j)
      mean[j] = round_to(static_cast<float>(sum[j] / static_cast<double>(plan.vocab)), dtype);
  }
  for (uint64_t r = first_row; r <= last_row; ++r) {
    const float* v;
    if (static_cast<int64_t>(r) < plan.vocab) {
      fill_row(r, row.data());
      v = row.data();
    } else {
      v = mean.data();
    }
    const uint64_t c0 = r == first_row ? range.begin - r * width : 0;
    const uint64_t c1 = r == last_row ? range.end - r * width : width;
    for (uint64_t j = c0; j < c1; ++j) store(out, dtype, r * width + j, v[j]);
  }
}

ReindexedTensor::ReindexedTensor(const VocabPlan& plan,
                                 std::span<const HfCheckpoint* const> members, size_t m,
                                 const std::string& name, DType dtype, uint64_t numel,
                                 ElementRange range)
    : bytes_(std::max<uint64_t>(1, numel * dtype_size(dtype))) {
  void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  data_ = static_cast<std::byte*>(p);
  try {
    reindex_vocab_tensor(plan, members, m, name, dtype, range, data_);
  } catch (...) {
    ::munmap(data_, bytes_);
    throw;
  }
}

ReindexedTensor::~ReindexedTensor() {
  ::munmap(data_, bytes_);
}

}  // namespace kintsugi
