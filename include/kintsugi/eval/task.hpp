#pragma once
// Task examples from JSONL files (docs/evaluator.md), one JSON object a line:
//   generate   {"context": str, "target": str}
//   choice     {"context": str, "choices": [str, ...], "label": int}
//   perplexity {"text": str}
// with an optional "id" (a string); other keys and blank lines are errors
// (docs/tasks.md). A bad line is an InputError "FILE:LINE: problem".
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "kintsugi/config/job.hpp"

namespace kintsugi {

struct Example {
  size_t line = 0;  // 1-based line in its file
  std::string id;
  std::string context;               // generate, choice
  std::string target;                // generate
  std::vector<std::string> choices;  // choice
  size_t label = 0;                  // choice
  std::string text;                  // perplexity
};

// The first `limit` examples (0 = all) of `file`.
std::vector<Example> load_examples(const std::filesystem::path& file, TaskKind kind, size_t limit);

// A task of a job with its examples for one split.
struct EvalTask {
  TaskConfig config;
  std::filesystem::path file;
  std::vector<Example> examples;
};
EvalTask load_task(const TaskConfig& config, const std::string& split);

}  // namespace kintsugi
