#include "kintsugi/pool/flat_plan.hpp"

#include <algorithm>

#include "kintsugi/common/error.hpp"

namespace kintsugi {

ElementRange flat_share(uint64_t numel, int rank, int nranks, uint64_t granule) {
  KS_CHECK(nranks >= 1 && rank >= 0 && rank < nranks, "rank within world");
  KS_CHECK(granule >= 1, "granule >= 1");
  const uint64_t units = (numel + granule - 1) / granule;
  const auto p = static_cast<uint64_t>(nranks);
  const auto r = static_cast<uint64_t>(rank);
  // units * r / p without overflow for any realistic tensor (units < 2^58).
  const uint64_t u0 = units / p * r + units % p * r / p;
  const uint64_t u1 = units / p * (r + 1) + units % p * (r + 1) / p;
  return {std::min(numel, u0 * granule), std::min(numel, u1 * granule)};
}

std::vector<ElementRange> chunks_of(ElementRange range, uint64_t chunk) {
  KS_CHECK(chunk >= 1, "chunk >= 1");
  std::vector<ElementRange> out;
  for (uint64_t b = range.begin; b < range.end; b += chunk)
    out.push_back({b, std::min(range.end, b + chunk)});
  return out;
}

}  // namespace kintsugi
