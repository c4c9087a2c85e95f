#pragma once
// Counter-based random numbers for the optimizers: Philox4x32-10 (Salmon et al.,
// "Parallel random numbers: as easy as 1, 2, 3", SC'11) plus Box–Muller.
//
// Why counter-based and not a std::mt19937 stream: every random number the
// search uses is a pure function of (seed, restart, generation, sample index,
// coordinate). Nothing about the generator lives in the optimizer's state, so
// a search saved after any generation and loaded into a fresh process draws
// exactly the numbers the uninterrupted run would have drawn, and candidates
// can be generated (or regenerated in tell()) in any order.
#include <array>
#include <cstdint>

namespace kintsugi::search {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

// One Philox4x32 block with 10 rounds: four 32-bit outputs for (counter, key).
PhiloxCounter philox4x32_10(PhiloxCounter counter, PhiloxKey key);

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
