// dtype conversions against independent references: every 16-bit pattern
// decoded with ldexp, and fp32 -> 16-bit rounding against a double-precision
// round-half-even computed with nearbyint.
#include <catch2/catch.hpp>
#include <cfenv>
#include <cmath>
#include <cstring>
#include <vector>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/dtype.hpp"

using namespace kintsugi;

namespace {

uint32_t bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// A binary float with `ebits` exponent bits and `mbits` stored mantissa bits,
// IEEE style (all-ones exponent = Inf/NaN), decoded with ldexp.
double decode_ref(uint32_t b, int ebits, int mbits) {
  const uint32_t sign = b >> (ebits + mbits);
  const uint32_t exp = (b >> mbits) & ((1u << ebits) - 1);
  const uint32_t mant = b & ((1u << mbits) - 1);
  const int bias = (1 << (ebits - 1)) - 1;
  double v;
  if (exp == (1u << ebits) - 1) {
    v = mant ? std::nan("") : HUGE_VAL;
  } else if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), 1 - bias - mbits);
  } else {
    v = std::ldexp(static_cast<double>(mant + (1u << mbits)), static_cast<int>(exp) - bias - mbits);
  }
  return sign ? -v : v;
}

// Round x (finite) to the format with `p` significant bits, minimum normal
// exponent emin and largest finite value maxf: nearest, ties to even.
double round_ref(double x, int p, int emin, double maxf) {
  if (x == 0) return x;
  const double ax = std::fabs(x);
  int e;
  std::frexp(ax, &e);  // ax = f * 2^e, f in [0.5, 1)
  const int lead = std::max(e - 1, emin);
  const double quantum = std::ldexp(1.0, lead - (p - 1));
  double r = std::nearbyint(ax / quantum) * quantum;  // default mode: ties to even
  if (r > maxf) r = HUGE_VAL;
  return std::copysign(r, x);
}

// Only failures reach Catch: millions of passing comparisons would dominate
// the run time as assertions.
bool same(float got, double want) {
  if (std::isnan(want)) return std::isnan(got);
  return bits(got) == bits(static_cast<float>(want));
}

#define CHECK_SAME(got, want, input_bits)                                                   \
  do {                                                                                      \
    const float g_ = (got);                                                                 \
    const double w_ = (want);                                                               \
    if (!same(g_, w_)) {                                                                    \
      INFO("input bits 0x" << std::hex << (input_bits) << " got " << g_ << " want " << w_); \
      REQUIRE(same(g_, w_));                                                                \
    }                                                                                       \
  } while (0)

#define FAST_REQUIRE(cond)      \
  do {                          \
    if (!(cond)) REQUIRE(cond); \
  } while (0)

}  // namespace

TEST_CASE("dtype names and sizes", "[io][dtype]") {
  REQUIRE(std::fegetround() == FE_TONEAREST);
  const std::vector<std::pair<std::string, size_t>> all = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"I16", 2},     {"U16", 2},
      {"I32", 4},  {"U32", 4}, {"I64", 8}, {"U64", 8},     {"F16", 2},
      {"BF16", 2}, {"F32", 4}, {"F64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  for (const auto& [n, s] : all) {
    const auto d = dtype_from_name(n);
    REQUIRE(d);
    CHECK(dtype_name(*d) == n);
    CHECK(dtype_size(*d) == s);
    CHECK(dtype_is_float(*d) == (n[0] == 'F' || n == "BF16"));
  }
  CHECK_FALSE(dtype_from_name("F4"));
  CHECK_FALSE(dtype_from_name("bf16"));
  CHECK_FALSE(dtype_from_name(""));
}

TEST_CASE("bf16 and fp16 decode: all 65536 patterns", "[io][dtype]") {
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<uint16_t>(b);
    CHECK_SAME(bf16_to_f32(h), decode_ref(b, 8, 7), b);
    CHECK_SAME(f16_to_f32(h), decode_ref(b, 5, 10), b);
    // Sign of NaN kept.
    FAST_REQUIRE(std::signbit(bf16_to_f32(h)) == ((b & 0x8000u) != 0));
    FAST_REQUIRE(std::signbit(f16_to_f32(h)) == ((b & 0x8000u) != 0));
  }
}

TEST_CASE("bf16 and fp16 encode: exact values, midpoints and neighbours of all patterns",
          "[io][dtype]") {
  struct Fmt {
    int ebits, mbits;
    uint16_t (*enc)(float);
  };
  const Fmt fmts[] = {{8, 7, f32_to_bf16}, {5, 10, f32_to_f16}};
  for (const auto& f : fmts) {
    const int p = f.mbits + 1;
    const int emin = 2 - (1 << (f.ebits - 1));
    const double maxf =
        decode_ref(((1u << f.ebits) - 2) << f.mbits | ((1u << f.mbits) - 1), f.ebits, f.mbits);
    for (uint32_t b = 0; b < 65536; ++b) {
      const double v = decode_ref(b, f.ebits, f.mbits);
      const uint16_t enc = f.enc(static_cast<float>(v));
      if (std::isnan(v)) {
        // NaN stays NaN, sign kept.
        FAST_REQUIRE(std::isnan(decode_ref(enc, f.ebits, f.mbits)));
        FAST_REQUIRE((enc & 0x8000) == (b & 0x8000));
        continue;
      }
      FAST_REQUIRE(enc == b);  // exact values (Inf included) survive
      if (std::isinf(v) || (b & 0x7fffu) == ((1u << f.ebits) - 1) << f.mbits) continue;
      // Midpoint to the next pattern away from zero, and its fp32 neighbours.
      const double next = decode_ref(b + 1, f.ebits, f.mbits);
      const double mid =
          std::isinf(next)
              ? std::copysign(maxf + (maxf - std::fabs(decode_ref(b - 1, f.ebits, f.mbits))) / 2, v)
              : (v + next) / 2;
      const float m = static_cast<float>(mid);
      FAST_REQUIRE(static_cast<double>(m) == mid);
      for (float x : {m, std::nextafter(m, 0.0f), std::nextafter(m, 2 * m)}) {
        const double want = round_ref(static_cast<double>(x), p, emin, maxf);
        CHECK_SAME(static_cast<float>(decode_ref(f.enc(x), f.ebits, f.mbits)), want, bits(x));
      }
    }
  }
}

TEST_CASE("fp32 -> bf16/fp16 over a sweep of fp32 bit patterns", "[io][dtype]") {
  uint64_t checked = 0;
  for (uint64_t u = 0; u < (1ull << 32); u += 997) {
    const float x = from_bits(static_cast<uint32_t>(u));
    const uint16_t b = f32_to_bf16(x), h = f32_to_f16(x);
    if (std::isnan(x)) {
      FAST_REQUIRE(std::isnan(bf16_to_f32(b)));
      FAST_REQUIRE(std::isnan(f16_to_f32(h)));
      FAST_REQUIRE(std::signbit(bf16_to_f32(b)) == std::signbit(x));
      FAST_REQUIRE(std::signbit(f16_to_f32(h)) == std::signbit(x));
      continue;
    }
    const double xd = static_cast<double>(x);
    double want_b = std::isinf(x) ? xd : round_ref(xd, 8, -126, decode_ref(0x7f7f, 8, 7));
    double want_h = std::isinf(x) ? xd : round_ref(xd, 11, -14, 65504.0);
    CHECK_SAME(bf16_to_f32(b), want_b, static_cast<uint32_t>(u));
    CHECK_SAME(f16_to_f32(h), want_h, static_cast<uint32_t>(u));
    ++checked;
  }
  CHECK(checked > 4000000);
}

TEST_CASE("fp8 decode: all 256 patterns", "[io][dtype]") {
  for (uint32_t b = 0; b < 256; ++b) {
    // E5M2 is IEEE-like.
    CHECK_SAME(f8e5m2_to_f32(static_cast<uint8_t>(b)), decode_ref(b, 5, 2), b);
    // E4M3 "fn": bias 7, no Inf; only S.1111.111 is NaN.
    const double e4 = (b & 0x7f) == 0x7f ? std::nan("") : [&] {
      const uint32_t e = (b >> 3) & 0xf, m = b & 7;
      const double v = e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, static_cast<int>(e) - 10);
      return (b & 0x80) ? -v : v;
    }();
    CHECK_SAME(f8e4m3_to_f32(static_cast<uint8_t>(b)), e4, b);
  }
  CHECK(f8e4m3_to_f32(0x7e) == 448.0f);  // the format's largest value
}

TEST_CASE("bulk conversions", "[io][dtype]") {
  const std::vector<float> src = {0.0f, -1.5f, 3.140625f, 65504.0f, 1e-8f, INFINITY, -INFINITY};
  for (DType d : {DType::BF16, DType::F16, DType::F32, DType::F64}) {
    std::vector<unsigned char> buf(src.size() * dtype_size(d) + 1);
    convert_from_f32(d, src.data(), buf.data() + 1, src.size());  // unaligned on purpose
    std::vector<float> back(src.size());
    convert_to_f32(d, buf.data() + 1, back.data(), src.size());
    for (size_t i = 0; i < src.size(); ++i) {
      float want = src[i];
      if (d == DType::BF16) want = bf16_to_f32(f32_to_bf16(src[i]));
      if (d == DType::F16) want = f16_to_f32(f32_to_f16(src[i]));
      CHECK(bits(back[i]) == bits(want));
    }
  }
  // 1e-8 is below half of fp16's smallest subnormal (2^-24 ~ 5.96e-8): it flushes to +0.
  CHECK(f32_to_f16(1e-8f) == 0);
  CHECK(f32_to_f16(3e-8f) == 0x0001);  // just above half: rounds up to the smallest subnormal
  CHECK(f32_to_bf16(3.140625f) == 0x4049);
  std::vector<unsigned char> b(4);
  float out;
  CHECK_THROWS_AS(convert_to_f32(DType::I32, b.data(), &out, 1), InputError);
  CHECK_THROWS_AS(convert_from_f32(DType::I8, &out, b.data(), 1), InputError);
}
