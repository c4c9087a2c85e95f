#pragma once
// The flat plan: which contiguous element range of each tensor a rank owns
// when merging and writing. Every rank computes the same plan on its own.
#include <cstdint>
#include <vector>

namespace kintsugi {

struct ElementRange {
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t size() const { return end - begin; }
  bool empty() const { return end <= begin; }
};

// Rank `rank` of `nranks` gets a contiguous share of [0, numel); boundaries
// fall on multiples of `granule` elements (the last share ends at numel), and
// the shares of ranks 0..nranks-1 are in order and cover [0, numel) exactly.
ElementRange flat_share(uint64_t numel, int rank, int nranks, uint64_t granule = 64);

// `range` cut into consecutive chunks of at most `chunk` elements, each
// starting at a multiple of `chunk` relative to range.begin.
std::vector<ElementRange> chunks_of(ElementRange range, uint64_t chunk);

}  // namespace kintsugi
