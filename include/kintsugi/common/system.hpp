#pragma once
// Facts about this machine and this moment, as messages, locks, states and
// scratch folders record them.
#include <string>

namespace kintsugi {

// gethostname(), or "unknown-host" when it fails.
std::string host_name();

// The current time in UTC, "YYYY-MM-DDTHH:MM:SSZ".
std::string now_utc();

// The CPU's model name, as `lscpu` prints it: /proc/cpuinfo's "model name"
// (x86) or "Processor" (some ARM kernels); "unknown CPU" when neither is there.
std::string cpu_model();

// The kernel's transparent huge pages mode, the bracketed word of
// /sys/kernel/mm/transparent_hugepage/enabled ("always", "madvise", "never"),
// or "unavailable" (no such file: another OS, or a kernel without THP).
// HugeVector's buffers get huge pages under "always" and "madvise".
std::string transparent_huge_pages();

}  // namespace kintsugi
