#include "kintsugi/common/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace kintsugi {

void init_logging(int rank, int world_size, spdlog::level::level_enum level) {
  auto logger = spdlog::stderr_color_mt("kintsugi");
  if (world_size > 1)
    logger->set_pattern(fmt::format("[%H:%M:%S.%e] [%^%l%$] [rank {}] %v", rank));
  else
    logger->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  logger->set_level(level);
  spdlog::set_default_logger(logger);
}

}  // namespace kintsugi
