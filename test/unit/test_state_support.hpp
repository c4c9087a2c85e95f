#pragma once
// Helpers for the state tests: bitwise comparison (NaN == NaN when the bits
// agree) and the h5py check.
#include <bit>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "kintsugi/common/record.hpp"
#include "test_support.hpp"

namespace kintsugi::test {

inline bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::bit_cast<uint64_t>(a[i]) != std::bit_cast<uint64_t>(b[i])) return false;
  return true;
}

inline bool same_bits(const Record& a, const Record& b) {
  if (a.ints != b.ints || a.strings != b.strings || a.reals.size() != b.reals.size()) return false;
  auto ia = a.reals.begin();
  auto ib = b.reals.begin();
  for (; ia != a.reals.end(); ++ia, ++ib)
    if (ia->first != ib->first || !same_bits(ia->second, ib->second)) return false;
  return true;
}

// The h5py tests need /usr/bin/python3 with h5py and numpy (scripts/install-deps.sh
// installs them); without them they fail, never skip.
inline void require_h5py() {
  INFO("/usr/bin/python3 cannot import h5py and numpy (run scripts/install-deps.sh)");
  REQUIRE(run_shell("/usr/bin/python3 -c 'import h5py, numpy'").status == 0);
}

}  // namespace kintsugi::test
