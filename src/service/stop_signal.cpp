#include "kintsugi/service/stop_signal.hpp"

#include <csignal>

namespace kintsugi {

namespace {
std::atomic<bool> g_stop{false};
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_stop_signal(int sig) {
  g_signal = sig;
  g_stop.store(true);
}
}  // namespace

const std::atomic<bool>& install_stop_handlers() {
  static_assert(std::atomic<bool>::is_always_lock_free, "the flag is set from a signal handler");
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
  return g_stop;
}

const std::atomic<bool>& stop_flag() {
  return g_stop;
}

int stop_signal_number() {
  return static_cast<int>(g_signal);
}

}  // namespace kintsugi
