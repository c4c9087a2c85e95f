#pragma once
// Helpers for the state tests: bitwise comparison (NaN == NaN when the bits
// agree) and running a shell command (the h5py checks).
#include <bit>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "kintsugi/common/record.hpp"

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

struct ShellResult {
  int status;          // exit code, or -1
  std::string output;  // stdout and stderr together
};

inline ShellResult run_shell(const std::string& cmd) {
  ShellResult r{-1, ""};
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = pclose(p);
  if (st >= 0 && (st & 0x7f) == 0) r.status = (st >> 8) & 0xff;
  return r;
}

// The h5py tests need /usr/bin/python3 with h5py and numpy (scripts/install-deps.sh
// installs them); without them they fail, never skip.
inline void require_h5py() {
  INFO("/usr/bin/python3 cannot import h5py and numpy (run scripts/install-deps.sh)");
  REQUIRE(run_shell("/usr/bin/python3 -c 'import h5py, numpy'").status == 0);
}

}  // namespace kintsugi::test
