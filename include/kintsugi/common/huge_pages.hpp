#pragma once
// Large buffers on transparent huge pages, where the kernel gives them.
//
// Why: the merge kernels read N inputs and write one output at once. On 4 KiB
// pages each of those streams crosses a page every 4 KiB, and the hardware
// prefetchers stop at page boundaries: with 8 bf16 inputs of 64 MiB on 2 cores
// of an AMD EPYC Zen 4 the weighted sum ran at 25 GB/s from std::vector
// buffers and at 37-39 GB/s from 2 MiB pages, while the STREAM triad (3
// streams) ran at 35 GB/s either way (bench/RESULTS.md). The pool's shards,
// the merged model and the bench's buffers are allocated here.
//
// An allocation of at least kHugePage bytes starts on a 2 MiB boundary and is
// marked MADV_HUGEPAGE (a hint: with transparent huge pages off, or where the
// kernel has none to give, the pages are ordinary ones). Its size is not
// rounded up: the 4 KiB pages past its last whole 2 MiB are ordinary. Smaller
// allocations are plain operator new.
#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <limits>
#include <new>
#include <vector>

namespace kintsugi {

inline constexpr size_t kHugePage = size_t{2} << 20;

template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() noexcept = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}

  T* allocate(size_t n) {
    if (n > std::numeric_limits<size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePage) return static_cast<T*>(::operator new(bytes));
    void* p = nullptr;
    if (::posix_memalign(&p, kHugePage, bytes) != 0) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
    ::madvise(p, bytes, MADV_HUGEPAGE);  // a hint: its failure changes nothing
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) noexcept {
    if (n * sizeof(T) < kHugePage)
      ::operator delete(p);
    else
      std::free(p);
  }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
};

template <class T>
using HugeVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace kintsugi
