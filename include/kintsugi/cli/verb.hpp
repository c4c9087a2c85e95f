#pragma once
// The CLI is one executable with verbs. Each verb lives in its own file under
// src/cli/ and registers itself with a static VerbRegistration, so adding a
// verb never touches main.cpp.
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace kintsugi::cli {

struct Verb {
  std::string name;
  std::string help;
  int order;  // position in `kintsugi --help`
  // Adds options to `sub` and returns the action to run once parsing succeeded.
  // The action returns the process exit code.
  std::function<std::function<int()>(CLI::App& sub)> setup;
};

std::vector<Verb>& verb_registry();

struct VerbRegistration {
  explicit VerbRegistration(Verb v) { verb_registry().push_back(std::move(v)); }
};

}  // namespace kintsugi::cli
