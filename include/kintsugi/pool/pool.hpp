#pragma once
// A pool: the checkpoints a job merges. They must agree on tensor names,
// shapes and dtypes; each gets a fingerprint so a resumed job can refuse a
// pool whose files changed.
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "kintsugi/io/hf_checkpoint.hpp"

namespace kintsugi {

// One way a member differs from the pool's first member.
struct PoolDifference {
  std::string checkpoint;  // the member's path
  std::string tensor;      // the tensor concerned
  std::string what;        // e.g. "dtype F32 here, BF16 in a/"
  // "<checkpoint>: tensor <tensor>: <what>", one line.
  std::string text() const;
};

// Every difference of `other` from `reference`: tensors missing on either
// side, dtypes and shapes that differ; in tensor-name order.
std::vector<PoolDifference> checkpoint_differences(const HfCheckpoint& reference,
                                                   const HfCheckpoint& other);

// Every difference of each member from the first (the pool's one
// compatibility rule, for a search's pool and a merge recipe's models alike).
std::vector<PoolDifference> pool_differences(std::span<const HfCheckpoint* const> members);
// Throws InputError "incompatible pool: <first difference> (and N more
// differences)" when a member differs from the first.
void check_pool_compatible(std::span<const HfCheckpoint* const> members);
// The same message for a list of differences found otherwise (nothing when empty).
void check_no_differences(std::span<const PoolDifference> differences);

class Pool {
 public:
  // Opens every path as an HfCheckpoint (throws InputError on an unreadable
  // one); compatibility is checked by check_compatible().
  static Pool open(const std::vector<std::filesystem::path>& paths);
  explicit Pool(std::vector<HfCheckpoint> members);

  size_t size() const { return members_.size(); }
  const HfCheckpoint& operator[](size_t i) const { return members_[i]; }
  const std::vector<HfCheckpoint>& members() const { return members_; }
  // The first member's tensor names, sorted (the pool's, once compatible).
  const std::vector<std::string>& tensor_names() const;

  // Every difference of each member from the first; empty when compatible.
  std::vector<PoolDifference> differences() const;
  // Throws InputError naming the first differing checkpoint and tensor (and
  // how many more differences there are).
  void check_compatible() const;

 private:
  std::vector<const HfCheckpoint*> pointers() const;

  std::vector<HfCheckpoint> members_;
};

enum class FingerprintMode {
  // Layout plus, per tensor, every byte of tensors up to 1 MiB and 16 windows
  // of 4 KiB evenly spaced over larger ones (the first at its start, the last
  // at its end). Reads a few MB even for a 100B checkpoint.
  Sampled,
  // Layout plus every byte of every tensor.
  Full,
};

// 32 lowercase hex digits: XXH64 of the layout (tensor names, dtypes,
// shapes, in name order) followed by XXH64 of the content (per tensor, in
// name order, the bytes the mode selects, each prefixed by its offset). Equal
// layouts give equal first halves, so a mismatch tells "other tensors" from
// "other values". Independent of how the checkpoint is sharded into files.
std::string fingerprint(const HfCheckpoint& c, FingerprintMode mode = FingerprintMode::Sampled);

}  // namespace kintsugi
