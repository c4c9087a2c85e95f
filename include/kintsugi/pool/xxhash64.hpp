#pragma once
// XXH64 (Yann Collet's xxHash, 64-bit), streaming. Written here because it is
// 80 lines and Debian's libxxhash is not among the project's dependencies;
// the tests hold it against the published test vectors.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kintsugi {

class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  // Hash of everything given so far (the state is kept; more may follow).
  uint64_t digest() const;

 private:
  uint64_t v_[4];
  uint64_t seed_;
  uint64_t total_ = 0;
  unsigned char buf_[32];
  size_t buffered_ = 0;
};

uint64_t xxh64(const void* data, size_t n, uint64_t seed = 0);

}  // namespace kintsugi
