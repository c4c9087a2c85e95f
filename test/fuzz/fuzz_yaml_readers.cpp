// libFuzzer target for the two strict YAML readers (built and run by
// scripts/fuzz.sh): the job file (parse_job) and the mergekit recipe
// (parse_recipe). Input: one byte choosing the reader (even: job, odd:
// recipe), then the YAML text. Any input may be refused with an InputError;
// anything else (another exception, a crash, a sanitizer report, a leak) is a
// bug.
//
// Run with KINTSUGI_FUZZ_WRITE_SEEDS=DIR it writes seed inputs (the demo job,
// recipes of every merge method, with gradients and filters) and exits.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "kintsugi/common/error.hpp"
#include "kintsugi/config/job.hpp"
#include "kintsugi/merge/recipe.hpp"

namespace {

namespace fs = std::filesystem;

const char* const kRecipes[] = {
    "merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight: 0.5\n"
    "  - model: b\n    parameters:\n      weight: [0.1, 0.9]\ndtype: bfloat16\n",
    "merge_method: ties\nbase_model: base\nparameters:\n  normalize: true\n  int8_mask: true\n"
    "  lambda: 1.0\nmodels:\n  - model: a\n    parameters:\n      density: 0.5\n"
    "      weight:\n        - filter: mlp\n          value: 0.3\n        - value: 0.7\n",
    "merge_method: dare_ties\nbase_model: base\nmodels:\n  - model: a\n    parameters: "
    "{density: 0.3, weight: 1}\nout_dtype: float16\n",
    "merge_method: slerp\nbase_model: a\nparameters:\n  t: [0, 0.5, 1]\nmodels:\n  - model: a\n"
    "  - model: b\n",
    "merge_method: model_stock\nbase_model: base\nmodels: [{model: a}, {model: b}, {model: c}]\n",
    "merge_method: task_arithmetic\nbase_model: base\nparameters: {lambda: 0.5}\n"
    "models:\n  - model: \"quoted \\\"path\\\"\\nwith newline\"\n    parameters: {weight: 1e-3}\n",
};

const char* const kJob =
    "pool:\n  base: /pool/base\n  checkpoints: [/pool/a, /pool/b]\n"
    "tasks:\n  - name: add\n    file: /tasks/add.{split}.jsonl\n    kind: generate\n"
    "    metric: exact_match\n    max_new_tokens: 8\n    stop: [\"\\n\"]\n"
    "  - name: bal\n    file: /tasks/bal.{split}.jsonl\n    kind: choice\n    metric: acc_norm\n"
    "search: {method: cmaes, budget: 20, population: 6, sigma0: 0.3, seed: 7,\n"
    "  parameterization: simplex, granularity: layer_group, layer_groups: 2}\n"
    "objective: {kind: weighted, weights: {add: 2, bal: 1}}\n"
    "evaluator: {batch_size: 8}\nparallel: {tensor_parallel: 1}\noutput: {state: s.h5}\n";

const char* const kCommandJob =
    "pool:\n  checkpoints: [/pool/a, /pool/b]\n"
    "evaluator:\n  kind: command\n  command: [lm_eval, --model, vllm, --model_args, "
    "\"pretrained={model},tensor_parallel_size={num_gpus}\", --tasks, \"{tasks}\", "
    "--output_path, \"{output}\"]\n  results: lm_eval\n  timeout_s: 3600\n"
    "tasks:\n  - {name: gsm8k, task: gsm8k, metric: \"exact_match,strict-match\"}\n";

void write_seed(const fs::path& path, char selector, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << selector << text;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("KINTSUGI_FUZZ_WRITE_SEEDS")) {
    fs::create_directories(dir);
    write_seed(fs::path(dir) / "job", '\0', kJob);
    write_seed(fs::path(dir) / "command-job", '\0', kCommandJob);
    int i = 0;
    for (const char* r : kRecipes)
      write_seed(fs::path(dir) / ("recipe" + std::to_string(i++)), '\1', r);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] % 2 == 0)
      (void)kintsugi::parse_job(text, "fuzz.yaml", "/nonexistent-kintsugi-fuzz");
    else
      (void)kintsugi::parse_recipe(text, "/nonexistent-kintsugi-fuzz/r.yaml");
  } catch (const kintsugi::InputError&) {
    // Refused with a message: the expected outcome for bad input.
  }
  return 0;
}
