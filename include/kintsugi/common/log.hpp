#pragma once
// Logging goes to stderr (results go to stdout or files). On MPI runs each line
// carries the rank so interleaved output stays readable.
#include <spdlog/spdlog.h>

namespace kintsugi {

// Sets up the stderr logger once per process; `rank` < 0 means "not under MPI".
void init_logging(int rank, int world_size, spdlog::level::level_enum level);

}  // namespace kintsugi
