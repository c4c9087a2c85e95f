#pragma once
// The safetensors dtypes and conversion between the floating ones and fp32.
// fp32 -> bf16/fp16 rounds to nearest, ties to even; NaN and Inf are kept.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace kintsugi {

enum class DType : uint8_t {
  BOOL,
  U8,
  I8,
  I16,
  U16,
  I32,
  U32,
  I64,
  U64,
  F16,
  BF16,
  F32,
  F64,
  F8_E4M3,
  F8_E5M2,
};

// "BF16" -> DType::BF16; nullopt for a name the format does not define.
std::optional<DType> dtype_from_name(std::string_view name);
// The format's own spelling ("BF16", "F8_E4M3", ...).
std::string_view dtype_name(DType d);
size_t dtype_size(DType d);
bool dtype_is_float(DType d);

float bf16_to_f32(uint16_t bits);
uint16_t f32_to_bf16(float x);
float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float x);
float f8e4m3_to_f32(uint8_t bits);
float f8e5m2_to_f32(uint8_t bits);

// Converts `n` elements of a floating dtype at `src` (little-endian, any
// alignment) to fp32. Throws InputError for a non-floating dtype.
void convert_to_f32(DType d, const void* src, float* dst, size_t n);
// Converts fp32 to BF16, F16, F32 or F64 (rounding to nearest even).
void convert_from_f32(DType d, const float* src, void* dst, size_t n);

}  // namespace kintsugi
