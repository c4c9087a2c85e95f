// The product's one Philox4x32-10 against Random123's published known-answer
// vectors (kat_vectors in Random123's distribution), and the two uses built on
// it checked against those same published words: the DARE keep decision of the
// merge kernels and the optimizers' uniform numbers.
#include <catch2/catch.hpp>
#include <cstdint>

#include "kintsugi/common/philox.hpp"
#include "kintsugi/kernels/element_ops.hpp"
#include "kintsugi/kernels/merge_kernels.hpp"

using namespace kintsugi;

namespace {
// Random123 kat_vectors: philox4x32 10 rounds, counter {0,0,0,0}, key {0,0}.
constexpr uint32_t kZeroKat[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
}  // namespace

TEST_CASE("philox4x32_10 matches Random123's known-answer vectors", "[common][philox]") {
  CHECK(philox4x32_10({{0, 0, 0, 0}}, 0, 0) ==
        Philox4x32{{kZeroKat[0], kZeroKat[1], kZeroKat[2], kZeroKat[3]}});
  CHECK(philox4x32_10({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu,
                      0xffffffffu) ==
        Philox4x32{{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}});
  CHECK(philox4x32_10({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u,
                      0x299f31d0u) ==
        Philox4x32{{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}});
}

TEST_CASE(
    "DARE keeps element i of block 0 iff the top 24 bits of Random123's word i fall under "
    "the density",
    "[common][philox][merge]") {
  // Seed key 0, input 0, elements 0..3 are the four words of the counter-0
  // block; the keep threshold sits exactly between the word's 24-bit value u
  // and u + 1 (in units of 2^-24).
  for (uint64_t i = 0; i < 4; ++i) {
    const uint32_t u = kZeroKat[i] >> 8;
    CAPTURE(i, u);
    CHECK(ops::dare_uniform(0, 0, i) == static_cast<float>(u) / 16777216.0f);
    const float at = static_cast<float>(u) / 16777216.0f;
    const float above = static_cast<float>(u + 1) / 16777216.0f;
    CHECK_FALSE(dare_keep(0, 0, i, at));  // keep iff uniform < density
    CHECK(dare_keep(0, 0, i, above));
  }
  // Element 4 starts block 1, another Philox counter: not a word of block 0.
  CHECK(ops::dare_uniform(0, 0, 4) != ops::dare_uniform(0, 0, 0));
}
