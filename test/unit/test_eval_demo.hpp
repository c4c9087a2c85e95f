#pragma once
// The demo pool for evaluator tests: examples/demo in the source tree, or the
// folder named by KINTSUGI_EVAL_DEMO (e.g. a `make_pool.py --tiny` output).
#include <cstdlib>
#include <filesystem>

#include "test_support.hpp"

namespace kintsugi::test {

inline std::filesystem::path eval_demo_dir() {
  if (const char* d = std::getenv("KINTSUGI_EVAL_DEMO")) return d;
  return source_dir() / "examples" / "demo";
}

}  // namespace kintsugi::test
