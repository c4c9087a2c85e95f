#pragma once
// Checkpoints whose vocabularies differ (added tokens, another tokenizer):
// mergekit's tokenizer reconciliation (`tokenizer_source` and `tokenizer:`).
// An output vocabulary is chosen (the base's, the union of all, or one
// model's); each checkpoint's token-indexed tensors (embed_tokens, lm_head)
// are re-indexed to it, and the rows of tokens a checkpoint lacks are filled
// by mergekit's rules: a token only one checkpoint has takes that
// checkpoint's row, a token the base has takes the base's, any other token
// the average of the rows of the checkpoints that have it, a token none has
// zeros; `tokens:` entries override (a model's row, a model's other token,
// zeros; `force` also replaces the checkpoints' own rows). Rows past the
// vocabulary (pad_to_multiple_of) hold the mean of the vocabulary's rows.
// The merge engine and the search's pool read through the same plan.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kintsugi/io/dtype.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/pool/flat_plan.hpp"

namespace kintsugi {

// One `tokenizer.tokens` entry: where a token's row comes from.
struct TokenRowRule {
  enum class Kind { Auto, Zero, Model, ModelToken };
  Kind kind = Kind::Auto;
  size_t member = 0;                // Model, ModelToken: index into the members
  std::optional<int64_t> token_id;  // ModelToken: the member's row ...
  std::string token;                // ... or the member's token (when no token_id)
  bool force = false;
  std::string where;  // "file:line"
};

struct VocabSpec {
  enum class Source { Base, Union, Model };
  Source source = Source::Union;
  size_t model = 0;  // Source::Model: index into the members
  std::vector<std::pair<std::string, TokenRowRule>> tokens;  // in the recipe's order
  int64_t pad_to_multiple_of = 0;                            // 0: none
  std::string where;                                         // "file:line"
};

// Token-indexed tensors: their first axis is the vocabulary.
bool is_vocab_tensor(std::string_view name);

struct VocabPlan {
  int64_t vocab = 0;  // ids [0, vocab) of the output vocabulary
  int64_t rows = 0;   // rows of the output's token-indexed tensors (vocab, padded)
  // perm[m][id]: member m's row of output token id, -1 when it lacks it.
  std::vector<std::vector<int64_t>> perm;
  // How a member that lacks output token id (or every member, when forced)
  // gets its row.
  struct Fill {
    enum class Kind { Own, Zero, Average, Row };
    Kind kind = Kind::Own;  // Own: every member has the token, nothing forced
    bool force = false;
    size_t member = 0;  // Row
    int64_t row = 0;    // Row: that member's row
  };
  std::vector<Fill> fill;  // per output id
  // The `tokens:` rule of each output id (set: it has one): `fill` with its
  // force flag and, when fixed, the row it names (Zero, or Row of a member).
  struct Rule {
    bool set = false, fixed = false;
    Fill fill;
    std::string where;
  };
  std::vector<Rule> rules;
  // The output's tokenizer files: tokenizer.json (and tokenizer_config.json,
  // null when the source has none), and the folder whose other tokenizer
  // files (special_tokens_map.json, chat templates, ...) are copied.
  nlohmann::json tokenizer_json;
  nlohmann::json tokenizer_config;
  std::filesystem::path tokenizer_folder;
  bool tokenizer_changed = false;  // false: the source's tokenizer.json as it is
  int64_t added = 0;               // tokens the output adds to the source's vocabulary
};

// `members[0]` is the base (the recipe's base_model, or its first model).
// InputError naming the folder when a member has no readable tokenizer.json.
VocabPlan plan_vocab(std::span<const HfCheckpoint* const> members, const VocabSpec& spec);

// plan.fill[id] from plan.perm (member 0 the base) and plan.rules, as
// mergekit's assign_embedding_sources; true when no member has the token and
// no rule fixes its row (zeros).
bool fill_tokens(VocabPlan& plan, size_t id);

// The plan of one token-indexed tensor whose inputs are `inputs` (indices
// into plan's `members`, the tensor's base first): the same vocabulary, those
// members' rows, and the fills over those inputs alone, as mergekit's
// PermutedEmbeddings fills a tensor from its own inputs (a slice's sources).
// InputError when a `tokens:` rule takes its row from a member not among them.
VocabPlan vocab_for_inputs(const VocabPlan& plan, std::span<const size_t> inputs,
                           std::span<const HfCheckpoint* const> members, const std::string& tensor);

// The pool's compatibility rule with reconciled vocabularies: the members may
// differ in the first axis of their token-indexed tensors only (each must be
// 2-D with the same row length and dtype as the first member's). Throws
// InputError "incompatible pool: ..." otherwise.
void check_pool_compatible_vocab(std::span<const HfCheckpoint* const> members);

// Member m's re-indexed tensor `name` (plan.rows x row length) in `dtype`
// (its own dtype, or the recipe's): elements [range.begin, range.end) are
// written to out[range.begin ...], `out` addressing element 0 of the whole
// tensor. Averages are computed in `dtype`, each step rounded, as mergekit's
// torch arithmetic in the recipe's dtype.
void reindex_vocab_tensor(const VocabPlan& plan, std::span<const HfCheckpoint* const> members,
                          size_t m, const std::string& name, DType dtype, ElementRange range,
                          std::byte* out);

// Member m's re-indexed copy of token-indexed tensor `name` (numel elements
// in `dtype`), of which only `range` is filled: anonymous memory the size of
// the whole tensor, which reserves no page that is not touched, so a rank
// that needs a slice pays for the slice (the merge engine, the search's pool).
class ReindexedTensor {
 public:
  ReindexedTensor(const VocabPlan& plan, std::span<const HfCheckpoint* const> members, size_t m,
                  const std::string& name, DType dtype, uint64_t numel, ElementRange range);
  ReindexedTensor(const ReindexedTensor&) = delete;
  ReindexedTensor& operator=(const ReindexedTensor&) = delete;
  ~ReindexedTensor();
  // Element 0 of the whole tensor (only `range` holds values).
  const std::byte* data() const { return data_; }

 private:
  uint64_t bytes_;
  std::byte* data_ = nullptr;
};

}  // namespace kintsugi
