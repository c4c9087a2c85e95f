// Normal numbers for the optimizers from Philox blocks (common/philox.hpp).
#include "kintsugi/search/philox.hpp"

#include <cmath>
#include <numbers>

namespace kintsugi::search {

double uniform_open0(uint64_t bits) {
  // (bits >> 11) is in [0, 2^53); +1 moves it to [1, 2^53], scaled into (0, 1].
  return static_cast<double>((bits >> 11) + 1) * 0x1.0p-53;
}

std::array<double, 2> normal_pair(uint64_t seed, uint32_t restart, uint32_t generation,
                                  uint32_t sample, uint32_t block) {
  const Philox4x32 r =
      philox4x32_10({{block, sample, generation, restart}}, static_cast<uint32_t>(seed),
                    static_cast<uint32_t>(seed >> 32));
  const uint64_t a = (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
  const uint64_t b = (static_cast<uint64_t>(r.v[2]) << 32) | r.v[3];
  const double u1 = uniform_open0(a);
  const double u2 = uniform_open0(b);
  const double radius = std::sqrt(-2.0 * std::log(u1));
  const double angle = 2.0 * std::numbers::pi * u2;
  return {radius * std::cos(angle), radius * std::sin(angle)};
}

double standard_normal(uint64_t seed, uint32_t restart, uint32_t generation, uint32_t sample,
                       uint32_t coord) {
  return normal_pair(seed, restart, generation, sample, coord / 2)[coord % 2];
}

}  // namespace kintsugi::search
