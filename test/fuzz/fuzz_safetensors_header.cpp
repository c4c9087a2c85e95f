// libFuzzer target for the safetensors header parser (built and run by
// scripts/fuzz.sh). Input: the header's JSON bytes followed by 8 bytes, the
// little-endian size of the data buffer the header is checked against, so
// mutations inside the JSON keep the size in place.
// Any input may be refused with an InputError; anything else (another
// exception, a crash, a sanitizer report, a leak) is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint64_t data_size = 0;
  for (size_t i = 0; i < 8; ++i) data_size |= static_cast<uint64_t>(data[size - 8 + i]) << (8 * i);
  const std::string_view header(reinterpret_cast<const char*>(data), size - 8);
  try {
    const auto h = kintsugi::parse_safetensors_header(header, data_size, "fuzz");
    // What was accepted must tile [0, data_size) exactly.
    uint64_t pos = 0;
    for (const auto& t : h.tensors) {
      if (t.begin != pos || t.end < t.begin || t.end > data_size) __builtin_trap();
      if (t.nbytes() != t.numel() * kintsugi::dtype_size(t.dtype)) __builtin_trap();
      pos = t.end;
    }
    if (pos != data_size) __builtin_trap();
  } catch (const kintsugi::InputError&) {
  }
  return 0;
}
