// dtype names, sizes and the bit-level conversions between fp32 and the
// 16/8-bit floating formats. Written here rather than taken from a library:
// the rounding (nearest, ties to even) and NaN/Inf handling are part of the
// merge's bitwise contract, and the whole thing is a few dozen lines.
#include "kintsugi/io/dtype.hpp"

#include <array>
#include <cmath>
#include <cstring>

#include "kintsugi/common/error.hpp"

namespace kintsugi {

namespace {

struct DTypeRow {
  DType d;
  std::string_view name;
  size_t size;
  bool is_float;
};

constexpr std::array<DTypeRow, 15> kDTypes{{
    {DType::BOOL, "BOOL", 1, false},
    {DType::U8, "U8", 1, false},
    {DType::I8, "I8", 1, false},
    {DType::I16, "I16", 2, false},
    {DType::U16, "U16", 2, false},
    {DType::I32, "I32", 4, false},
    {DType::U32, "U32", 4, false},
    {DType::I64, "I64", 8, false},
    {DType::U64, "U64", 8, false},
    {DType::F16, "F16", 2, true},
    {DType::BF16, "BF16", 2, true},
    {DType::F32, "F32", 4, true},
    {DType::F64, "F64", 8, true},
    {DType::F8_E4M3, "F8_E4M3", 1, true},
    {DType::F8_E5M2, "F8_E5M2", 1, true},
}};

const DTypeRow& row(DType d) {
  const auto i = static_cast<size_t>(d);
  KS_CHECK(i < kDTypes.size() && kDTypes[i].d == d, "dtype table out of order");
  return kDTypes[i];
}

uint32_t f32_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

float bits_f32(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// Rounds `value >> shift` to nearest, ties to even (shift >= 1).
uint32_t shift_round_even(uint32_t value, unsigned shift) {
  const uint32_t q = value >> shift;
  const uint32_t rem = value & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  return (rem > half || (rem == half && (q & 1u))) ? q + 1 : q;
}

}  // namespace

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& r : kDTypes)
    if (r.name == name) return r.d;
  return std::nullopt;
}

std::string_view dtype_name(DType d) {
  return row(d).name;
}
size_t dtype_size(DType d) {
  return row(d).size;
}
bool dtype_is_float(DType d) {
  return row(d).is_float;
}

float bf16_to_f32(uint16_t bits) {
  return bits_f32(static_cast<uint32_t>(bits) << 16);
}

uint16_t f32_to_bf16(float x) {
  const uint32_t u = f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    // NaN: keep sign and the top payload bits, force it quiet so it stays NaN.
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  }
  // Same exponent range as fp32: rounding the low 16 bits is all there is;
  // a carry into the exponent (up to Inf) is the correctly rounded result.
  const uint32_t lsb = (u >> 16) & 1u;
  return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));  // Inf / NaN
  if (exp != 0) return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return bits_f32(sign);
  // Subnormal: normalize.
  uint32_t e = 113;
  while ((mant & 0x400u) == 0) {
    mant <<= 1;
    --e;
  }
  return bits_f32(sign | (e << 23) | ((mant & 0x3ffu) << 13));
}

uint16_t f32_to_f16(float x) {
  const uint32_t u = f32_bits(x);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) {  // NaN: quiet, top payload bits kept
    return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  }
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520: Inf
  const uint32_t e = a >> 23;
  if (e >= 113) {  // normal in fp16; a carry may round up to the next binade
    const uint32_t v = ((e - 112u) << 23) | (a & 0x7fffffu);
    return static_cast<uint16_t>(sign | shift_round_even(v, 13));
  }
  // Subnormal (or zero) in fp16: units of 2^-24. value = m * 2^(e - 150).
  const uint32_t m = e == 0 ? (a & 0x7fffffu) : ((a & 0x7fffffu) | 0x800000u);
  const unsigned shift = 126u - (e == 0 ? 1u : e);
  if (shift > 24) return sign;  // below half the smallest subnormal
  return static_cast<uint16_t>(sign | shift_round_even(m, shift));
}

float f8e4m3_to_f32(uint8_t b) {
  // E4M3 "fn": bias 7, no Inf, S.1111.111 is NaN, subnormals.
  const float s = (b & 0x80u) ? -1.0f : 1.0f;
  const int exp = (b >> 3) & 0xf;
  const int mant = b & 0x7;
  if (exp == 0xf && mant == 0x7) return std::nanf("");
  if (exp == 0) return s * std::ldexp(static_cast<float>(mant), -9);
  return s * std::ldexp(static_cast<float>(8 + mant), exp - 10);
}

float f8e5m2_to_f32(uint8_t b) {
  // E5M2 is the top byte of an fp16.
  return f16_to_f32(static_cast<uint16_t>(static_cast<uint16_t>(b) << 8));
}

void convert_to_f32(DType d, const void* src, float* dst, size_t n) {
  const auto* p = static_cast<const unsigned char*>(src);
  switch (d) {
    case DType::F32:
      std::memcpy(dst, p, n * 4);
      return;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        dst[i] = bf16_to_f32(v);
      }
      return;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        dst[i] = f16_to_f32(v);
      }
      return;
    case DType::F64:
      for (size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        dst[i] = static_cast<float>(v);
      }
      return;
    case DType::F8_E4M3:
      for (size_t i = 0; i < n; ++i) dst[i] = f8e4m3_to_f32(p[i]);
      return;
    case DType::F8_E5M2:
      for (size_t i = 0; i < n; ++i) dst[i] = f8e5m2_to_f32(p[i]);
      return;
    default:
      throw_input("dtype {} is not a floating type; it cannot be read as F32", dtype_name(d));
  }
}

void convert_from_f32(DType d, const float* src, void* dst, size_t n) {
  auto* p = static_cast<unsigned char*>(dst);
  switch (d) {
    case DType::F32:
      std::memcpy(p, src, n * 4);
      return;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t v = f32_to_bf16(src[i]);
        std::memcpy(p + 2 * i, &v, 2);
      }
      return;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t v = f32_to_f16(src[i]);
        std::memcpy(p + 2 * i, &v, 2);
      }
      return;
    case DType::F64:
      for (size_t i = 0; i < n; ++i) {
        const double v = static_cast<double>(src[i]);
        std::memcpy(p + 8 * i, &v, 8);
      }
      return;
    default:
      throw_input("cannot write dtype {} from F32 (supported: BF16, F16, F32, F64)", dtype_name(d));
  }
}

}  // namespace kintsugi
