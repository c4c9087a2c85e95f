#pragma once
// The optimizers' random numbers: Box–Muller normals on the product's one
// Philox4x32-10 generator (common/philox.hpp).
//
// Why counter-based and not a std::mt19937 stream: every random number the
// search uses is a pure function of (seed, restart, generation, sample index,
// coordinate). Nothing about the generator lives in the optimizer's state, so
// a search saved after any generation and loaded into a fresh process draws
// exactly the numbers the uninterrupted run would have drawn, and candidates
// can be generated (or regenerated in tell()) in any order.
#include <array>
#include <cstdint>

#include "kintsugi/common/philox.hpp"

namespace kintsugi::search {

// A double in (0, 1] from the top 53 bits of a 64-bit word (never 0, so log() is finite).
double uniform_open0(uint64_t bits);

// Two independent N(0,1) numbers for block `block` of the stream named by
// (seed, restart, generation, sample): Box–Muller on one Philox block.
std::array<double, 2> normal_pair(uint64_t seed, uint32_t restart, uint32_t generation,
                                  uint32_t sample, uint32_t block);

// Coordinate `coord` of the standard normal vector for (seed, restart,
// generation, sample): coordinates 2b and 2b+1 share block b.
double standard_normal(uint64_t seed, uint32_t restart, uint32_t generation, uint32_t sample,
                       uint32_t coord);

}  // namespace kintsugi::search
