#pragma once
// SHA-256 (FIPS 180-4), for naming a recipe in merged outputs. Small enough to
// own rather than add a crypto library dependency.
#include <string>
#include <string_view>

namespace kintsugi {

// Lowercase hex digest of `data`.
std::string sha256_hex(std::string_view data);

}  // namespace kintsugi
