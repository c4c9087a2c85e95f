#include "kintsugi/io/jsonl_texts.hpp"

#include <nlohmann/json.hpp>
#include <sstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/input_file.hpp"

namespace kintsugi {

std::vector<std::string> read_jsonl_texts(const std::filesystem::path& path) {
  std::istringstream in(read_input_file(path, "input file", kMaxDataFileBytes));
  std::vector<std::string> texts;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw_input("{}:{}: not valid JSON: {}", path.string(), n, e.what());
    }
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
      throw_input("{}:{}: expected an object with a string \"text\"", path.string(), n);
    texts.push_back(j["text"].get<std::string>());
  }
  return texts;
}

}  // namespace kintsugi
