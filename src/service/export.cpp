#include "kintsugi/service/export.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "kintsugi/common/error.hpp"
#include "kintsugi/config/job.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "kintsugi/merge/engine.hpp"
#include "kintsugi/merge/recipe.hpp"
#include "kintsugi/pool/shard_loader.hpp"
#include "kintsugi/search/parameterization.hpp"
#include "kintsugi/service/session.hpp"

namespace kintsugi {

std::string yaml_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

namespace {

// Shortest text that parses back to the same double.
std::string num(double v) {
  return fmt::format("{}", v);
}

}  // namespace

std::string linear_recipe_text(const std::vector<std::string>& checkpoints,
                               const std::vector<double>& w, size_t num_layers,
                               const std::string& out_dtype, const std::string& comment) {
  const size_t n = checkpoints.size();
  KS_CHECK(n > 0 && w.size() % n == 0, "weights are N x G");
  const size_t groups = w.size() / n;
  std::string t = fmt::format("# {}\nmerge_method: linear\ndtype: float32\nout_dtype: {}\n",
                              comment, out_dtype);
  t += "parameters:\n  normalize: false\nmodels:\n";
  for (size_t i = 0; i < n; ++i) {
    t += fmt::format("  - model: {}\n    parameters:\n", yaml_quote(checkpoints[i]));
    if (groups == 1) {
      t += fmt::format("      weight: {}\n", num(w[i]));
      continue;
    }
    // One filter per layer (its group's weight), embeddings with the first
    // group, everything after the layers (final norm, lm_head) with the last.
    t += "      weight:\n";
    for (size_t l = 0; l < num_layers; ++l) {
      const size_t g = search::layer_group(static_cast<int64_t>(l), num_layers, groups);
      t += fmt::format("        - {{filter: \"layers.{}.\", value: {}}}\n", l, num(w[g * n + i]));
    }
    t += fmt::format("        - {{filter: \"embed\", value: {}}}\n", num(w[i]));
    t += fmt::format("        - {{filter: \"*\", value: {}}}\n", num(w[(groups - 1) * n + i]));
  }
  return t;
}

std::string pool_dtype_name(const HfCheckpoint& first) {
  const DType d = first.info(first.tensor_names().front()).dtype;
  return d == DType::BF16 ? "bfloat16" : d == DType::F16 ? "float16" : "float32";
}

int run_export(const ExportOptions& o) {
  const RunState state = load_state(o.state);
  const int64_t e = o.eval ? *o.eval : best_evaluation(state);
  if (e < 0) throw_input("{}: holds no successful evaluation to export", o.state);
  if (static_cast<size_t>(e) >= state.evals.size())
    throw_input("--eval {}: {} holds {} evaluations", e, o.state, state.evals.size());
  if (state.evals.status[static_cast<size_t>(e)] != static_cast<int64_t>(EvalStatus::Ok))
    throw_input("--eval {}: that evaluation failed ({})", e,
                state.evals.error[static_cast<size_t>(e)]);

  if (o.job.empty() && state.meta.job_file.empty())
    throw_input("{}: the state records no job file: pass --job JOB.yaml", o.state);
  const std::filesystem::path job_file =
      o.job.empty() ? std::filesystem::path(state.meta.job_file) : std::filesystem::path(o.job);
  const JobConfig job =
      o.job.empty() ? parse_job(state.meta.config, job_file.string(), job_file.parent_path())
                    : load_job(job_file);
  std::vector<std::string> paths;
  for (const auto& p : job.pool.checkpoints) paths.push_back(p.string());
  if (paths.size() != state.meta.pool_names.size())
    throw_input("{}: the job names {} checkpoints, the state {}", job_file.string(), paths.size(),
                state.meta.pool_names.size());
  const HfCheckpoint first = HfCheckpoint::open(paths.front());
  const size_t num_layers = static_cast<size_t>(model_config_of(first).num_layers);
  const std::string dtype = o.dtype.empty() ? pool_dtype_name(first) : o.dtype;
  const size_t w = state.evals.n_weights;
  const std::vector<double> weights = table_row(state.evals.weights, static_cast<size_t>(e), w);
  const std::string text =
      linear_recipe_text(paths, weights, num_layers, dtype,
                         fmt::format("kintsugi export of evaluation {} from {}", e, o.state));
  const Recipe recipe =
      parse_recipe(text, std::filesystem::absolute(o.out).parent_path() / "export.yaml");
  MergeOptions mo;
  mo.out_dir = o.out;
  mo.overwrite = o.overwrite;
  mo.max_shard_bytes = parse_byte_size(o.max_shard_size);
  mo.seed = state.meta.seed;
  const auto report = run_merge(recipe, mo, MPI_COMM_WORLD);
  if (world_rank() == 0)
    spdlog::info("exported evaluation {} (objective {:.4f}) to {}: {} tensors, {:.1f} MB", e,
                 state.evals.objective[static_cast<size_t>(e)], o.out, report.tensors,
                 static_cast<double>(report.bytes_written) / 1e6);
  return kExitOk;
}

}  // namespace kintsugi
