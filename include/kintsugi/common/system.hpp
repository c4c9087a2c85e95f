#pragma once
// Facts about this machine and this moment, as messages, locks, states and
// scratch folders record them.
#include <string>

namespace kintsugi {

// gethostname(), or "unknown-host" when it fails.
std::string host_name();

// The current time in UTC, "YYYY-MM-DDTHH:MM:SSZ".
std::string now_utc();

}  // namespace kintsugi
