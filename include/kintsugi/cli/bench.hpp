#pragma once
// `kintsugi bench <what>`: each benchmark registers itself here from its own
// file (src/cli/bench_<what>.cpp); verb_bench.cpp adds them as subcommands.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kintsugi::cli {

struct Bench {
  std::string name;
  std::string help;
  // Adds options to `sub`, returns the action (its result is the exit code).
  std::function<std::function<int()>(CLI::App& sub)> setup;
};

std::vector<Bench>& bench_registry();

struct BenchRegistration {
  explicit BenchRegistration(Bench b) { bench_registry().push_back(std::move(b)); }
};

// Seconds on the steady clock: the difference of two calls times a step.
inline double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A word for `sh -c`, in single quotes.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `cmd` through the shell (a benchmark's peer: HF's tokenizer, a PyTorch
// script) and returns its stdout; exit 1 naming `what` when it fails or prints
// nothing. Its stderr goes to ours.
std::string peer_output(const std::string& cmd, const std::string& what);

}  // namespace kintsugi::cli
