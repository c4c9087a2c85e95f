#pragma once
// A JSONL file of texts, one {"text": "..."} object per line: the input of
// `kintsugi tokenize` and `kintsugi bench tokenize`.
#include <filesystem>
#include <string>
#include <vector>

namespace kintsugi {

// Every line's "text". InputError "FILE:LINE: problem" for a line that is not
// JSON or not an object with a string "text", and for an unreadable file.
std::vector<std::string> read_jsonl_texts(const std::filesystem::path& path);

}  // namespace kintsugi
