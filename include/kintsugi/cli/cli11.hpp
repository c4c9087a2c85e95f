#pragma once
// CLI11, included once for every CLI source. GCC 12 at -O2 reports a false
// -Wnull-dereference inside libstdc++ when it inlines CLI11's
// CLI::detail::split (vector<string>::emplace_back of an empty string), and
// whether it does depends on the size of unrelated functions in the same
// unity unit: a change to bench_merge.cpp's timing loop alone set it off.
// The warning is off for CLI11's code only (the code the path is inlined
// from); every other line keeps it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
