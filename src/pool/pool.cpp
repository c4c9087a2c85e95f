// Pool compatibility: every member against the first.
#include "kintsugi/pool/pool.hpp"

#include "kintsugi/common/error.hpp"

namespace kintsugi {

std::string PoolDifference::text() const {
  return fmt::format("{}: tensor {}: {}", checkpoint, tensor, what);
}

std::vector<PoolDifference> checkpoint_differences(const HfCheckpoint& reference,
                                                   const HfCheckpoint& other) {
  std::vector<PoolDifference> out;
  const auto& a = reference.tensor_names();
  const auto& b = other.tensor_names();
  const std::string ref = reference.path().string();
  const std::string oth = other.path().string();
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && a[i] < b[j])) {
      out.push_back({oth, a[i], fmt::format("missing (present in {})", ref)});
      ++i;
    } else if (i == a.size() || b[j] < a[i]) {
      out.push_back({oth, b[j], fmt::format("not in {}", ref)});
      ++j;
    } else {
      const TensorInfo& x = reference.info(a[i]);
      const TensorInfo& y = other.info(b[j]);
      if (x.dtype != y.dtype)
        out.push_back({oth, a[i],
                       fmt::format("dtype {} here, {} in {}", dtype_name(y.dtype),
                                   dtype_name(x.dtype), ref)});
      if (x.shape != y.shape)
        out.push_back({oth, a[i],
                       fmt::format("shape {} here, {} in {}", shape_text(y.shape),
                                   shape_text(x.shape), ref)});
      ++i;
      ++j;
    }
  }
  return out;
}

Pool Pool::open(const std::vector<std::filesystem::path>& paths) {
  std::vector<HfCheckpoint> members;
  members.reserve(paths.size());
  for (const auto& p : paths) members.push_back(HfCheckpoint::open(p));
  return Pool(std::move(members));
}

Pool::Pool(std::vector<HfCheckpoint> members) : members_(std::move(members)) {
  if (members_.empty()) throw_input("a pool needs at least one checkpoint");
}

const std::vector<std::string>& Pool::tensor_names() const {
  return members_[0].tensor_names();
}

std::vector<PoolDifference> pool_differences(std::span<const HfCheckpoint* const> members) {
  std::vector<PoolDifference> out;
  for (size_t k = 1; k < members.size(); ++k) {
    auto d = checkpoint_differences(*members[0], *members[k]);
    out.insert(out.end(), std::make_move_iterator(d.begin()), std::make_move_iterator(d.end()));
  }
  return out;
}

void check_pool_compatible(std::span<const HfCheckpoint* const> members) {
  check_no_differences(pool_differences(members));
}

void check_no_differences(std::span<const PoolDifference> d) {
  if (d.size() == 1) throw_input("incompatible pool: {}", d[0].text());
  if (d.size() > 1)
    throw_input("incompatible pool: {} (and {} more differences)", d[0].text(), d.size() - 1);
}

std::vector<const HfCheckpoint*> Pool::pointers() const {
  std::vector<const HfCheckpoint*> p;
  for (const auto& m : members_) p.push_back(&m);
  return p;
}

std::vector<PoolDifference> Pool::differences() const {
  return pool_differences(pointers());
}

void Pool::check_compatible() const {
  check_pool_compatible(pointers());
}

}  // namespace kintsugi
