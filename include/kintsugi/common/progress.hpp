#pragma once
// Progress for long work: a bar redrawn in place when stderr is a terminal,
// otherwise a log line at most every `log_interval` seconds (and at the end).
#include <chrono>
#include <cstdint>
#include <string>

namespace kintsugi {

class Progress {
 public:
  Progress(std::string label, uint64_t total, double log_interval_s = 10.0, bool enabled = true);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(uint64_t n = 1);
  void finish();

 private:
  void draw(bool final_line);

  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  double log_interval_s_;
  bool enabled_;
  bool tty_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace kintsugi
