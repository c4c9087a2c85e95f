// Pool compatibility: every member against the first.
#include "kintsugi/pool/pool.hpp"

#include "kintsugi/common/error.hpp"

namespace kintsugi {

namespace {

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

}  // namespace

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

std::vector<PoolDifference> Pool::differences() const {
  std::vector<PoolDifference> out;
  for (size_t k = 1; k < members_.size(); ++k) {
    auto d = checkpoint_differences(members_[0], members_[k]);
    out.insert(out.end(), std::make_move_iterator(d.begin()), std::make_move_iterator(d.end()));
  }
  return out;
}

void Pool::check_compatible() const {
  for (size_t k = 1; k < members_.size(); ++k) {
    const auto d = checkpoint_differences(members_[0], members_[k]);
    if (d.empty()) continue;
    const size_t total = differences().size();
    if (total == 1) throw_input("incompatible pool: {}", d[0].text());
    throw_input("incompatible pool: {} (and {} more differences)", d[0].text(), total - 1);
  }
}

}  // namespace kintsugi
