#include "kintsugi/service/export.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/system.hpp"
#include "kintsugi/config/job.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "kintsugi/merge/engine.hpp"
#include "kintsugi/merge/recipe.hpp"
#include "kintsugi/pool/pool.hpp"
#include "kintsugi/pool/shard_loader.hpp"
#include "kintsugi/search/parameterization.hpp"
#include "kintsugi/service/session.hpp"

namespace kintsugi {

std::string recipe_tokenizer_source(const PoolConfig& pool, bool base_named_apart) {
  if (pool.tokenizer_source == "model") return pool.checkpoints.at(pool.tokenizer_model).string();
  if (pool.tokenizer_source == "base" && base_named_apart) return pool.checkpoints.front().string();
  return pool.tokenizer_source;
}

std::string linear_recipe_text(const std::vector<std::string>& checkpoints,
                               const std::vector<double>& w, size_t num_layers,
                               const std::string& out_dtype, const std::string& comment,
                               const std::string& tokenizer_source) {
  const size_t n = checkpoints.size();
  KS_CHECK(n > 0 && w.size() % n == 0, "weights are N x G");
  const size_t groups = w.size() / n;
  RecipeToWrite r;
  r.comment = comment;
  r.merge_method = "linear";
  r.out_dtype = out_dtype;
  r.parameters = {{"normalize", false}};
  r.tokenizer_source = tokenizer_source;
  for (size_t i = 0; i < n; ++i) {
    RecipeToWrite::Model& m = r.models.emplace_back();
    m.path = checkpoints[i];
    if (groups == 1) {
      m.weight = {{"", w[i]}};
      continue;
    }
    // One filter per layer (its group's weight), embeddings with the first
    // group, everything after the layers (final norm, lm_head) with the last.
    for (size_t l = 0; l < num_layers; ++l) {
      const size_t g = search::layer_group(static_cast<int64_t>(l), num_layers, groups);
      m.weight.emplace_back(fmt::format("layers.{}.", l), w[g * n + i]);
    }
    m.weight.emplace_back("embed", w[i]);
    m.weight.emplace_back("*", w[(groups - 1) * n + i]);
  }
  return emit_recipe(r);
}

std::string pool_dtype_name(const HfCheckpoint& first) {
  const DType d = first.info(first.tensor_names().front()).dtype;
  return d == DType::BF16 ? "bfloat16" : d == DType::F16 ? "float16" : "float32";
}

void check_pool_identity(const std::vector<std::string>& paths,
                         const std::vector<std::string>& names,
                         const std::vector<std::string>& fingerprints, const std::string& job_file,
                         const std::string& state_file) {
  if (paths.size() != names.size() || fingerprints.size() != names.size())
    throw_input("{}: the job names {} checkpoints, the state {} ({})", job_file, paths.size(),
                names.size(), state_file);
  for (size_t i = 0; i < paths.size(); ++i) {
    const HfCheckpoint c = HfCheckpoint::open(paths[i]);
    if (c.name() != names[i])
      throw_input(
          "{}: checkpoint {} of the pool is {} ({}) but the search ran with {} there ({}): a "
          "reordered or different pool",
          job_file, i, c.name(), paths[i], names[i], state_file);
    const std::string fp = fingerprint(c);
    if (fp != fingerprints[i])
      throw_input(
          "{}: checkpoint {} ({}) is not the one the search ran with: fingerprint {} here, {} "
          "in {}",
          job_file, i, paths[i], fp, fingerprints[i], state_file);
  }
}

namespace {

// What rank 0 reads from the state, once, for every rank: a run writing the
// state meanwhile cannot give two ranks two different evaluations.
struct ExportPlan {
  int64_t eval = -1;
  double objective = 0;
  std::string job_file, recipe_text;
  uint64_t seed = 0;
  std::vector<std::string> paths, names, fingerprints;
};

ExportPlan plan_export(const ExportOptions& o) {
  ExportPlan p;
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
  for (const auto& c : job.pool.checkpoints) p.paths.push_back(c.string());
  p.names = state.meta.pool_names;
  p.fingerprints = state.meta.pool_fingerprints;
  if (p.paths.size() != p.names.size())
    throw_input("{}: the job names {} checkpoints, the state {}", job_file.string(), p.paths.size(),
                p.names.size());
  const HfCheckpoint first = HfCheckpoint::open(p.paths.front());
  const size_t num_layers = static_cast<size_t>(model_config_of(first).num_layers);
  const std::string dtype = o.dtype.empty() ? pool_dtype_name(first) : o.dtype;
  const size_t w = state.evals.n_weights;
  const std::vector<double> weights = table_row(state.evals.weights, static_cast<size_t>(e), w);
  p.recipe_text =
      linear_recipe_text(p.paths, weights, num_layers, dtype,
                         fmt::format("kintsugi export of evaluation {} from {}", e, o.state),
                         recipe_tokenizer_source(job.pool));
  p.eval = e;
  p.objective = state.evals.objective[static_cast<size_t>(e)];
  p.job_file = job_file.string();
  p.seed = state.meta.seed;
  return p;
}

}  // namespace

int run_export(const ExportOptions& o) {
  ExportPlan p;
  run_on_root(MPI_COMM_WORLD, [&] { p = plan_export(o); });
  nlohmann::json j;
  if (world_rank() == 0)
    j = {{"eval", p.eval},         {"objective", p.objective},
         {"job_file", p.job_file}, {"recipe", p.recipe_text},
         {"seed", p.seed},         {"paths", p.paths},
         {"names", p.names},       {"fingerprints", p.fingerprints}};
  j = nlohmann::json::parse(
      broadcast_string(world_rank() == 0 ? j.dump() : std::string(), MPI_COMM_WORLD));
  p.eval = j["eval"];
  p.objective = j["objective"];
  p.job_file = j["job_file"];
  p.recipe_text = j["recipe"];
  p.seed = j["seed"];
  p.paths = j["paths"].get<std::vector<std::string>>();
  p.names = j["names"].get<std::vector<std::string>>();
  p.fingerprints = j["fingerprints"].get<std::vector<std::string>>();
  // Every rank merges from its own view of the files: each checks that view
  // against the checkpoints the search ran with (names, then fingerprints).
  run_everywhere(MPI_COMM_WORLD, [&] {
    try {
      check_pool_identity(p.paths, p.names, p.fingerprints, p.job_file, o.state);
    } catch (const InputError& e) {
      if (world_size() == 1) throw;
      throw_input("rank {} on {}: {}", world_rank(), host_name(), e.what());
    }
  });
  const Recipe recipe =
      parse_recipe(p.recipe_text, std::filesystem::absolute(o.out).parent_path() / "export.yaml");
  MergeOptions mo;
  mo.out_dir = o.out;
  mo.overwrite = o.overwrite;
  mo.max_shard_bytes = parse_byte_size(o.max_shard_size);
  mo.seed = p.seed;
  mo.other_inputs = {{"job file", p.job_file}, {"state", o.state}};
  const auto report = run_merge(recipe, mo, MPI_COMM_WORLD);
  if (world_rank() == 0)
    spdlog::info("exported evaluation {} (objective {:.4f}) to {}: {} tensors, {:.1f} MB", p.eval,
                 p.objective, o.out, report.tensors,
                 static_cast<double>(report.bytes_written) / 1e6);
  return kExitOk;
}

}  // namespace kintsugi
