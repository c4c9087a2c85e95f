#include "kintsugi/common/progress.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>

namespace kintsugi {

Progress::Progress(std::string label, uint64_t total, double log_interval_s, bool enabled)
    : label_(std::move(label)),
      total_(total),
      log_interval_s_(log_interval_s),
      enabled_(enabled),
      tty_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

Progress::~Progress() {
  if (enabled_ && tty_ && !finished_ && done_ > 0) std::fputc('\n', stderr);
}

void Progress::advance(uint64_t n) {
  done_ += n;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  // A terminal gets ~10 redraws a second; a log file a line per interval.
  if (since >= (tty_ ? 0.1 : log_interval_s_) || done_ >= total_) {
    last_ = now;
    draw(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled_) draw(true);
}

void Progress::draw(bool final_line) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = total_ ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  const double eta = frac > 0 ? elapsed * (1.0 - frac) / frac : 0.0;
  if (tty_) {
    constexpr int width = 30;
    const int filled = static_cast<int>(frac * width);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %3.0f%% %llu/%llu %.1fs elapsed, %.1fs left  ", label_.c_str(),
                 bar.c_str(), frac * 100.0, static_cast<unsigned long long>(done_),
                 static_cast<unsigned long long>(total_), elapsed, eta);
    if (final_line) std::fputc('\n', stderr);
    std::fflush(stderr);
  } else {
    spdlog::info("{}: {}/{} ({:.0f}%), {:.1f}s elapsed, {:.1f}s left", label_, done_, total_,
                 frac * 100.0, elapsed, eta);
  }
}

}  // namespace kintsugi
