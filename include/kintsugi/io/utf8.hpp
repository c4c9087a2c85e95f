#pragma once
// Strict UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing
// above U+10FFFF), as Rust's str::from_utf8 applies it to a safetensors header.
#include <cstddef>
#include <optional>
#include <string_view>

namespace kintsugi {

// Offset of the first byte that starts an invalid sequence; nullopt when valid.
std::optional<size_t> first_invalid_utf8(std::string_view s);

}  // namespace kintsugi
