#pragma once
// The CLI is one executable with verbs. Each verb lives in its own file under
// src/cli/ and registers itself with a static VerbRegistration, so adding a
// verb never touches main.cpp.
#include <fmt/format.h>

#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "kintsugi/cli/cli11.hpp"

namespace kintsugi::cli {

struct Verb {
  std::string name;
  std::string help;
  int order;  // position in `kintsugi --help`
  // Adds options to `sub` and returns the action to run once parsing succeeded.
  // The action returns the process exit code.
  std::function<std::function<int()>(CLI::App& sub)> setup;
  // How the action uses MPI. Under a launcher (mpirun, srun) MPI is started
  // for every verb; run alone, only for Always.
  enum class Mpi {
    // Communicators of its own (evaluation groups, scorers): MPI even alone,
    // as a world of one (an MPI singleton).
    Always,
    // Collectives on the world only (merge): every rank runs it under a
    // launcher; alone it runs without MPI on dist/'s world-of-one helpers,
    // and skips MPI's start-up (0.15 s).
    UnderLauncher,
    // Reads files and prints (inspect, report, tokenize): never uses MPI;
    // under a launcher it runs on rank 0 only.
    Never,
  };
  Mpi mpi = Mpi::Always;
};

std::vector<Verb>& verb_registry();

// A CLI11 check that refuses a negative value ("-3"), which CLI11 would read
// into an unsigned option as 2^64 - 3. main() adds it to every unsigned
// option; verbs add it to signed options that take counts or indices.
inline CLI::Validator non_negative() {
  return CLI::Validator(
      [](std::string& v) {
        return !v.empty() && v.front() == '-' ? std::string("must not be negative, got ") + v
                                              : std::string();
      },
      "NONNEGATIVE");
}

// Prints a verb's results to stdout through C stdio: a failed write (a full
// disk, a closed pipe) then shows in main()'s final check, "cannot write the
// results to standard output: …", exit 1. (fmt::print would throw its own
// "cannot write to file", naming no stream.)
template <typename... Args>
void print_out(fmt::format_string<Args...> f, Args&&... args) {
  const std::string text = fmt::format(f, std::forward<Args>(args)...);
  std::fwrite(text.data(), 1, text.size(), stdout);
}

struct VerbRegistration {
  explicit VerbRegistration(Verb v) { verb_registry().push_back(std::move(v)); }
};

}  // namespace kintsugi::cli
