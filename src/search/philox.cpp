// Philox4x32-10, written out from the Random123 paper's definition (round
// constants, Weyl key schedule); no library offers it in Debian's C++ set.
#include "kintsugi/search/philox.hpp"

#include <cmath>
#include <numbers>

namespace kintsugi::search {

namespace {

constexpr uint32_t kMul0 = 0xD2511F53u;
constexpr uint32_t kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1

inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

}  // namespace

PhiloxCounter philox4x32_10(PhiloxCounter c, PhiloxKey k) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kMul0, c[0], hi0, lo0);
    mulhilo(kMul1, c[2], hi1, lo1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kWeyl0;
    k[1] += kWeyl1;
  }
  return c;
}

double uniform_open0(uint64_t bits) {
  // (bits >> 11) is in [0, 2^53); +1 moves it to [1, 2^53], scaled into (0, 1].
  return static_cast<double>((bits >> 11) + 1) * 0x1.0p-53;
}

std::array<double, 2> normal_pair(uint64_t seed, uint32_t restart, uint32_t generation,
                                  uint32_t sample, uint32_t block) {
  const PhiloxKey key = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  const PhiloxCounter r = philox4x32_10({block, sample, generation, restart}, key);
  const uint64_t a = (static_cast<uint64_t>(r[0]) << 32) | r[1];
  const uint64_t b = (static_cast<uint64_t>(r[2]) << 32) | r[3];
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
