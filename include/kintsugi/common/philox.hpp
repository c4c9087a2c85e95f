#pragma once
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11), written out from the Random123 paper's definition (round
// multipliers, Weyl key schedule): the one generator behind everything random
// in kintsugi, the optimizers' samples (search/philox.hpp) and the DARE keep
// masks (merge/element_ops.hpp), on the CPU and in the CUDA kernels alike.
//
// Why counter-based: a random number is a pure function of its key and
// counter, so nothing about the generator is state to save or to split
// between ranks. A search resumed from its file draws what the uninterrupted
// run drew, and a DARE mask is the same for any number of ranks.
// No library in Debian's C++ set offers it, and it must compile under nvcc.
#include <cstdint>

#include "kintsugi/common/host_device.hpp"

namespace kintsugi {

struct Philox4x32 {
  uint32_t v[4];
  friend bool operator==(const Philox4x32& a, const Philox4x32& b) {
    return a.v[0] == b.v[0] && a.v[1] == b.v[1] && a.v[2] == b.v[2] && a.v[3] == b.v[3];
  }
};

// The round multipliers and the Weyl increments of the key (golden ratio,
// sqrt(3) - 1), shared with the CPU kernels' vector copy of the rounds.
constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;

namespace philox_detail {
KS_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}
}  // namespace philox_detail

// One Philox4x32 block with 10 rounds: four 32-bit outputs for (counter, key).
KS_HD Philox4x32 philox4x32_10(Philox4x32 c, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < kPhiloxRounds; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_detail::mulhilo(kPhiloxM0, c.v[0], hi0, lo0);
    philox_detail::mulhilo(kPhiloxM1, c.v[2], hi1, lo1);
    c = Philox4x32{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return c;
}

}  // namespace kintsugi
