// HugePageAllocator: large buffers start on a 2 MiB boundary and their
// mapping carries the kernel's huge-page hint (the "hg" flag /proc/self/smaps
// shows for MADV_HUGEPAGE), small ones are plain; contents behave as a
// std::vector's.
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "kintsugi/common/huge_pages.hpp"

using namespace kintsugi;

namespace {

// The VmFlags line of the mapping that holds address p, from /proc/self/smaps.
std::string vm_flags_of(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-' && line.find(':') > line.find(' ')) {
      inside = lo <= a && a < hi;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

}  // namespace

TEST_CASE("huge pages: large buffers aligned and hinted, small ones plain", "[common]") {
  HugeVector<float> big(3 * kHugePage / sizeof(float) + 5);  // not a whole number of pages
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i);
  CHECK(reinterpret_cast<uintptr_t>(big.data()) % kHugePage == 0);
  CHECK(big.back() == static_cast<float>(big.size() - 1));
  CHECK(big.front() == 0.0f);

  HugeVector<std::byte> small(100, std::byte{7});
  CHECK(small[99] == std::byte{7});

  // Growing moves the contents to a new (aligned) buffer.
  HugeVector<uint16_t> grow(10, 3);
  grow.resize(kHugePage, 5);
  CHECK(reinterpret_cast<uintptr_t>(grow.data()) % kHugePage == 0);
  CHECK(grow[9] == 3);
  CHECK(grow[10] == 5);

  if (std::filesystem::exists("/sys/kernel/mm/transparent_hugepage/enabled")) {
    const std::string flags = vm_flags_of(big.data());
    INFO("VmFlags of the large buffer: " << flags);
    CHECK(flags.find(" hg") != std::string::npos);
  } else {
    WARN("this kernel has no transparent huge pages: the hint is not checked");
  }
}
