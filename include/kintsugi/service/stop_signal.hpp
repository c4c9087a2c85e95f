#pragma once
// SIGTERM and SIGUSR1 ask a search to stop: the coordinator abandons the
// generation in flight, keeps the last saved state and exits with
// kExitStopped, so a Slurm job can requeue itself and resume. Every rank
// installs the handler (srun and mpirun deliver the signal to all ranks; the
// default action would kill them); only rank 0's flag decides.
#include <atomic>

namespace kintsugi {

inline constexpr int kExitStopped = 3;

// Installs the handlers and returns the flag they set.
const std::atomic<bool>& install_stop_handlers();
// The flag itself, installed or not (never set without the handlers).
const std::atomic<bool>& stop_flag();
// The signal that set the flag (0 when none).
int stop_signal_number();

}  // namespace kintsugi
