// Checkpoint fingerprints: XXH64 of the layout and of (sampled or all) content.
#include <fmt/format.h>

#include "kintsugi/pool/pool.hpp"
#include "kintsugi/pool/xxhash64.hpp"

namespace kintsugi {

namespace {

constexpr uint64_t kWholeBelow = 1u << 20;  // tensors up to 1 MiB are hashed whole
constexpr uint64_t kWindows = 16;
constexpr uint64_t kWindow = 4096;

void put_u64(Xxh64& h, uint64_t v) {
  unsigned char b[8];
  for (auto& c : b) {
    c = static_cast<unsigned char>(v & 0xff);
    v >>= 8;
  }
  h.update(b, 8);
}

void put_str(Xxh64& h, std::string_view s) {
  put_u64(h, s.size());
  h.update(s);
}

}  // namespace

std::string fingerprint(const HfCheckpoint& c, FingerprintMode mode) {
  Xxh64 layout(0), content(1);
  for (const auto& name : c.tensor_names()) {
    const TensorInfo& t = c.info(name);
    put_str(layout, name);
    put_str(layout, dtype_name(t.dtype));
    put_u64(layout, t.shape.size());
    for (auto d : t.shape) put_u64(layout, static_cast<uint64_t>(d));

    const auto& f = c.file_of(name);
    const uint64_t n = t.nbytes();
    put_str(content, name);
    if (mode == FingerprintMode::Full || n <= kWholeBelow) {
      put_u64(content, 0);
      const auto b = f.bytes(t);
      content.update(b.data(), b.size());
    } else {
      for (uint64_t w = 0; w < kWindows; ++w) {
        const uint64_t off = (n - kWindow) / (kWindows - 1) * w +
                             (w == kWindows - 1 ? (n - kWindow) % (kWindows - 1) : 0);
        put_u64(content, off);
        const auto b = f.bytes(t, off, kWindow);
        content.update(b.data(), b.size());
      }
    }
  }
  return fmt::format("{:016x}{:016x}", layout.digest(), content.digest());
}

}  // namespace kintsugi
