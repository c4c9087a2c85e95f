#pragma once
// `kintsugi bench <what>`: each benchmark registers itself here from its own
// file (src/cli/bench_<what>.cpp); verb_bench.cpp adds them as subcommands.
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kintsugi/cli/cli11.hpp"

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

// A peer that answers while the benchmark runs, a line for a line, so that
// the two sides' repetitions can alternate: a shared host's speed drifts from
// one second to the next, and two blocks timed one after the other can land
// in different states (bench eval's PyTorch ratio swung from 1.4x to 2.6x
// between runs that way). `cmd` runs through the shell with its stdin and
// stdout on a socket to us; its stderr goes to ours. Every failure (it exits,
// it answers nothing) is an exit 1 naming `what`.
class PeerSession {
 public:
  PeerSession(const std::string& cmd, std::string what);
  ~PeerSession();  // a peer still running is killed
  PeerSession(const PeerSession&) = delete;
  PeerSession& operator=(const PeerSession&) = delete;
  // The peer's next line (without its newline).
  std::string read_line();
  // Sends `line` and returns the peer's one-line answer.
  std::string ask(const std::string& line);
  // Ends its input and returns what it prints until it exits, which must be
  // with status 0.
  std::string finish();

 private:
  // Closes our end and waits for the peer: how it ended, "" for exit status 0.
  std::string reap();
  [[noreturn]] void failed(const std::string& how);
  std::string what_;
  int fd_ = -1;
  int pid_ = -1;
  std::string pending_;  // read past the last line returned
};

}  // namespace kintsugi::cli
