#include "kintsugi/eval/task.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/input_file.hpp"

namespace kintsugi {

namespace {

std::string need_string(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) throw_input("{}: missing key '{}'", where, key);
  if (!j[key].is_string()) throw_input("{}: key '{}' must be a string", where, key);
  return j[key].get<std::string>();
}

}  // namespace

std::vector<Example> load_examples(const std::filesystem::path& file, TaskKind kind, size_t limit) {
  std::istringstream in(read_input_file(file, "task file", kMaxDataFileBytes));
  std::vector<Example> out;
  std::string line;
  size_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string where = file.string() + ":" + std::to_string(lineno);
    if (line.find_first_not_of(" \t") == std::string::npos) throw_input("{}: blank line", where);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) throw_input("{}: not valid JSON", where);
    if (!j.is_object()) throw_input("{}: a line must be a JSON object", where);
    Example e;
    e.line = lineno;
    if (j.contains("id")) {
      if (!j["id"].is_string()) throw_input("{}: key 'id' must be a string", where);
      e.id = j["id"].get<std::string>();
    }
    for (const auto& [key, value] : j.items()) {
      const bool known = key == "id" ||
                         ((kind == TaskKind::Generate) && (key == "context" || key == "target")) ||
                         ((kind == TaskKind::Choice) &&
                          (key == "context" || key == "choices" || key == "label")) ||
                         ((kind == TaskKind::Perplexity) && key == "text");
      if (!known)
        throw_input("{}: unknown key '{}' for a {} task", where, key, task_kind_name(kind));
    }
    switch (kind) {
      case TaskKind::Generate:
        e.context = need_string(j, "context", where);
        e.target = need_string(j, "target", where);
        break;
      case TaskKind::Choice: {
        e.context = need_string(j, "context", where);
        if (!j.contains("choices")) throw_input("{}: missing key 'choices'", where);
        const auto& c = j["choices"];
        if (!c.is_array() || c.size() < 2)
          throw_input("{}: key 'choices' must be a list of at least 2 strings", where);
        for (const auto& x : c) {
          if (!x.is_string() || x.get<std::string>().empty())
            throw_input("{}: key 'choices' must hold non-empty strings", where);
          e.choices.push_back(x.get<std::string>());
        }
        if (!j.contains("label")) throw_input("{}: missing key 'label'", where);
        if (!j["label"].is_number_integer())
          throw_input("{}: key 'label' must be an integer", where);
        const int64_t label = j["label"].get<int64_t>();
        if (label < 0 || static_cast<size_t>(label) >= e.choices.size())
          throw_input("{}: label {} is not an index into the {} choices", where, label,
                      e.choices.size());
        e.label = static_cast<size_t>(label);
        break;
      }
      case TaskKind::Perplexity:
        e.text = need_string(j, "text", where);
        if (e.text.empty()) throw_input("{}: key 'text' is empty", where);
        break;
    }
    out.push_back(std::move(e));
    if (limit != 0 && out.size() == limit) break;
  }
  if (in.bad()) throw_input("{}: read error", file.string());
  if (out.empty()) throw_input("{}: no examples", file.string());
  return out;
}

EvalTask load_task(const TaskConfig& config, const std::string& split) {
  EvalTask t;
  t.config = config;
  t.file = config.file_for(split);
  t.examples = load_examples(t.file, config.kind, config.limit);
  return t;
}

}  // namespace kintsugi
