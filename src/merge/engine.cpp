// The file-to-file merge: open the pool, check it, plan the output, merge each
// tensor's share on every rank, write, commit.
#include "kintsugi/merge/engine.hpp"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <optional>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/progress.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "kintsugi/merge/kernels.hpp"
#include "kintsugi/merge/tensor_merge.hpp"
#include "kintsugi/shard/flat_plan.hpp"

namespace kintsugi {
namespace fs = std::filesystem;
namespace {

bool mergeable(DType d) {
  return d == DType::BF16 || d == DType::F16 || d == DType::F32;
}

std::string torch_dtype(DType d) {
  switch (d) {
    case DType::BF16:
      return "bfloat16";
    case DType::F16:
      return "float16";
    default:
      return "float32";
  }
}

bool same_path(const fs::path& a, const fs::path& b) {
  std::error_code e1, e2;
  const auto ca = fs::weakly_canonical(a, e1), cb = fs::weakly_canonical(b, e2);
  return (!e1 && !e2) ? ca == cb : a == b;
}

// Runs `f` on rank 0 and makes its failure everyone's: the same exception
// type and message is thrown on every rank.
template <typename F>
void on_root(MPI_Comm comm, int rank, F&& f) {
  int kind = 0;  // 0 ok, 1 input, 2 runtime
  std::string msg;
  if (rank == 0) {
    try {
      f();
    } catch (const InputError& e) {
      kind = 1;
      msg = e.what();
    } catch (const std::exception& e) {
      kind = 2;
      msg = e.what();
    }
  }
  MPI_CHECK(MPI_Bcast(&kind, 1, MPI_INT, 0, comm));
  if (kind == 0) return;
  int len = static_cast<int>(msg.size());
  MPI_CHECK(MPI_Bcast(&len, 1, MPI_INT, 0, comm));
  msg.resize(static_cast<size_t>(len));
  MPI_CHECK(MPI_Bcast(msg.data(), len, MPI_CHAR, 0, comm));
  if (kind == 1) throw InputError(msg);
  throw RuntimeError(msg);
}

// Per-tensor method settings from the recipe.
TensorMethod resolve_method(const Recipe& r, const std::vector<const RecipeModel*>& models,
                            const std::string& name, double t, uint64_t seed) {
  TensorMethod m;
  m.method = r.method;
  m.seed = seed;
  const bool task = r.method == MergeMethod::TaskArithmetic || r.method == MergeMethod::Ties ||
                    r.method == MergeMethod::DareLinear || r.method == MergeMethod::DareTies;
  if (r.method == MergeMethod::Linear || task) {
    std::vector<double> w;
    for (const auto* rm : models) w.push_back(recipe_param(r, rm, "weight", name, t, std::nullopt));
    if (r.method == MergeMethod::Linear) {
      const bool normalize = recipe_param(r, nullptr, "normalize", name, t, 1.0) != 0.0;
      double sum = 0;
      for (double x : w) sum += x;
      if (normalize && std::fabs(sum) < 1e-12)
        throw_input("{}: linear: the weights of tensor {} sum to zero (set normalize: false)",
                    r.file.string(), name);
      for (double x : w) m.weights.push_back(static_cast<float>(normalize ? x / sum : x));
      return m;
    }
    for (double x : w) m.weights.push_back(static_cast<float>(x));
    const bool ties_like = r.method == MergeMethod::Ties;
    const bool dare = r.method == MergeMethod::DareLinear || r.method == MergeMethod::DareTies;
    m.lambda = recipe_param(r, nullptr, "lambda", name, t, 1.0);
    m.normalize = recipe_param(r, nullptr, "normalize", name, t, ties_like ? 1.0 : 0.0) != 0.0;
    m.rescale = recipe_param(r, nullptr, "rescale", name, t, dare ? 1.0 : 0.0) != 0.0;
    if (r.method != MergeMethod::TaskArithmetic)
      for (const auto* rm : models) {
        const double d = recipe_param(r, rm, "density", name, t, 1.0);
        if (d < 0.0 || d > 1.0)
          throw_input("{}: density {} for tensor {} is outside [0, 1]", rm->where, d, name);
        m.density.push_back(d);
      }
    return m;
  }
  if (r.method == MergeMethod::Slerp) m.t = recipe_param(r, nullptr, "t", name, t, std::nullopt);
  return m;
}

}  // namespace

MergeReport run_merge(const Recipe& r, const MergeOptions& opt, MPI_Comm comm) {
  const auto start = std::chrono::steady_clock::now();
  int rank = 0, size = 1;
  MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MPI_CHECK(MPI_Comm_size(comm, &size));

  // The pool: the base (if any) and the models that are not the base.
  std::optional<HfCheckpoint> base;
  if (r.base_model && r.method != MergeMethod::Linear) base = HfCheckpoint::open(*r.base_model);
  std::vector<const RecipeModel*> models;
  std::vector<HfCheckpoint> ckpts;
  for (const auto& rm : r.models) {
    if (base && same_path(rm.path, *r.base_model)) continue;
    models.push_back(&rm);
    ckpts.push_back(HfCheckpoint::open(rm.path));
  }
  const std::string method = std::string(merge_method_name(r.method));
  if (r.method == MergeMethod::Slerp && ckpts.size() != 1)
    throw_input("{}: slerp merges the base with exactly one other model, got {}", r.file.string(),
                ckpts.size());
  if (r.method == MergeMethod::ModelStock && ckpts.size() < 2)
    throw_input("{}: model_stock needs at least two models besides the base, got {}",
                r.file.string(), ckpts.size());
  if (ckpts.empty())
    throw_input("{}: {} needs at least one model besides the base", r.file.string(), method);
  if (ckpts.size() > kMaxMergeInputs)
    throw_input("{}: {} models, at most {} supported", r.file.string(), ckpts.size(),
                kMaxMergeInputs);

  // Compatibility: every checkpoint has the reference's tensors, shapes, dtypes.
  const HfCheckpoint& ref = base ? *base : ckpts[0];
  std::vector<const HfCheckpoint*> all;
  if (base) all.push_back(&*base);
  for (const auto& c : ckpts) all.push_back(&c);
  for (const auto* c : all) {
    if (c == &ref) continue;
    const auto& a = ref.tensor_names();
    const auto& b = c->tensor_names();
    auto mm = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
    if (mm.first != a.end() || mm.second != b.end()) {
      if (mm.first == a.end() || (mm.second != b.end() && *mm.second < *mm.first))
        throw_input("{}: tensor {} is not in {} (incompatible pool)", c->path().string(),
                    *mm.second, ref.path().string());
      throw_input("{}: tensor {} is missing (incompatible pool: {} has it)", c->path().string(),
                  *mm.first, ref.path().string());
    }
    for (const auto& n : a) {
      const auto& ia = ref.info(n);
      const auto& ib = c->info(n);
      if (ia.shape != ib.shape)
        throw_input("{}: tensor {}: shape [{}] differs from [{}] in {} (incompatible pool)",
                    c->path().string(), n, fmt::join(ib.shape, ","), fmt::join(ia.shape, ","),
                    ref.path().string());
      if (ia.dtype != ib.dtype)
        throw_input("{}: tensor {}: dtype {} differs from {} in {} (incompatible pool)",
                    c->path().string(), n, dtype_name(ib.dtype), dtype_name(ia.dtype),
                    ref.path().string());
    }
  }

  // Output plan.
  const auto out_float = r.out_dtype ? r.out_dtype : r.dtype;
  int64_t num_layers = 0;
  if (ref.config().is_object() && ref.config().contains("num_hidden_layers") &&
      ref.config()["num_hidden_layers"].is_number_integer())
    num_layers = ref.config()["num_hidden_layers"].get<int64_t>();
  if (num_layers <= 0)
    for (const auto& n : ref.tensor_names())
      if (auto l = layer_index(n)) num_layers = std::max(num_layers, *l + 1);
  std::vector<TensorSpec> specs;
  for (const auto& n : ref.tensor_names()) {
    const auto& info = ref.info(n);
    DType od = info.dtype;
    if (mergeable(info.dtype) && out_float) od = *out_float;
    specs.push_back({n, od, info.shape});
  }
  const Metadata meta = {{"format", "pt"},
                         {"merged_by", "kintsugi"},
                         {"merge_method", method},
                         {"recipe_sha256", r.sha256}};
  const ShardedPlan plan = plan_sharded(specs, meta, opt.max_shard_bytes);

  // Rank 0 creates the temporary folder and the pre-sized shard files.
  std::unique_ptr<HfFolderWriter> folder;
  std::vector<std::unique_ptr<SafetensorsWriter>> writers;
  fs::path tmp_dir = fs::path(opt.out_dir.lexically_normal().string() + ".partial");
  on_root(comm, rank, [&] {
    folder = std::make_unique<HfFolderWriter>(opt.out_dir, opt.overwrite);
    for (size_t f = 0; f < plan.file_names.size(); ++f)
      writers.push_back(std::make_unique<SafetensorsWriter>(folder->temp_dir() / plan.file_names[f],
                                                            plan.layouts[f]));
  });
  {
    // Every rank must agree on the temporary folder's name.
    std::string td = rank == 0 ? folder->temp_dir().string() : std::string();
    int len = static_cast<int>(td.size());
    MPI_CHECK(MPI_Bcast(&len, 1, MPI_INT, 0, comm));
    td.resize(static_cast<size_t>(len));
    MPI_CHECK(MPI_Bcast(td.data(), len, MPI_CHAR, 0, comm));
    tmp_dir = td;
  }
  std::vector<std::unique_ptr<SafetensorsRangeWriter>> ranges;
  if (rank != 0)
    for (size_t f = 0; f < plan.file_names.size(); ++f)
      ranges.push_back(
          std::make_unique<SafetensorsRangeWriter>(tmp_dir / plan.file_names[f], plan.layouts[f]));

  // Merge every tensor's share.
  uint64_t my_elems = 0;
  for (const auto& n : ref.tensor_names())
    my_elems += flat_share(ref.info(n).numel(), rank, size).size();
  // A bar on a terminal; otherwise the per-group log lines below.
  Progress progress(fmt::format("merge ({})", method), my_elems, 10.0,
                    opt.progress && rank == 0 && ::isatty(2));
  uint64_t bytes_read = 0, bytes_written = 0;
  // Without a terminal: one log line per tensor group (a layer, or the
  // tensors outside the layers), from rank 0.
  const bool group_log = opt.progress && rank == 0 && !::isatty(2);
  std::string group;
  size_t group_tensors = 0;
  auto end_group = [&] {
    if (group_log && group_tensors > 0)
      spdlog::info("merged {} ({} tensors)", group, group_tensors);
    group_tensors = 0;
  };
  for (size_t ti = 0; ti < specs.size(); ++ti) {
    const std::string& name = specs[ti].name;
    {
      const auto l = layer_index(name);
      const std::string g = l ? fmt::format("layer {}", *l) : std::string("non-layer tensors");
      if (g != group) {
        end_group();
        group = g;
      }
      ++group_tensors;
    }
    const TensorInfo& info = ref.info(name);
    const size_t file = plan.shard_of.at(name);
    const ElementRange range = flat_share(info.numel(), rank, size);
    auto write = [&](ElementRange c, std::span<const std::byte> bytes) {
      const uint64_t off = c.begin * dtype_size(specs[ti].dtype);
      if (rank == 0)
        writers[file]->pwrite(name, off, bytes);
      else
        ranges[file]->pwrite(name, off, bytes);
      bytes_written += bytes.size();
      progress.advance(c.size());
    };
    if (!mergeable(info.dtype)) {
      // Not a floating tensor the kernels merge (integer buffers, ...): copied from the reference.
      const uint64_t es = dtype_size(info.dtype);
      if (!range.empty()) {
        auto src = ref.file_of(name).bytes(info, range.begin * es, range.size() * es);
        write(range, src);
        bytes_read += src.size();
      }
      continue;
    }
    TensorSources src;
    src.name = name;
    src.numel = info.numel();
    src.dtype = info.dtype;
    auto data_of = [&](const HfCheckpoint& c) -> const void* {
      return c.file_of(name).bytes(c.info(name)).data();
    };
    if (base) src.base = data_of(*base);
    for (const auto& c : ckpts) src.models.push_back(data_of(c));
    const TensorMethod m = resolve_method(r, models, name, layer_t(name, num_layers), opt.seed);
    try {
      merge_tensor(src, m, range, specs[ti].dtype, opt.chunk_elems, comm, write);
    } catch (const std::bad_alloc&) {
      // What a rank holds is a few chunk buffers per input: say which knob sets it.
      throw_runtime(
          "{}: out of memory merging tensor {} in chunks of {} elements per input ({} MiB "
          "as fp32; --chunk-mib): lower the chunk or raise this rank's memory limit",
          opt.out_dir.string(), name, opt.chunk_elems, opt.chunk_elems * 4 >> 20);
    }
    bytes_read += range.size() * dtype_size(info.dtype) * (src.models.size() + (base ? 1 : 0));
    spdlog::debug("merged {} ({} elements here)", name, range.size());
  }
  end_group();
  progress.finish();
  for (auto& w : ranges) w->close();
  MPI_CHECK(MPI_Barrier(comm));

  on_root(comm, rank, [&] {
    for (auto& w : writers) w->commit();
    if (plan.file_names.size() > 1)
      folder->write_text("model.safetensors.index.json", plan.index_json());
    nlohmann::json config = ref.config().is_object() ? ref.config() : nlohmann::json::object();
    if (ref.config().is_object() || out_float) {
      DType shown = out_float ? *out_float : DType::F32;
      if (!out_float)
        for (const auto& s : specs)
          if (mergeable(s.dtype)) {
            shown = s.dtype;
            break;
          }
      config["torch_dtype"] = torch_dtype(shown);
      folder->write_text("config.json", config.dump(2) + "\n");
    }
    for (const auto& p : ref.passthrough_files()) folder->copy_file(p);
    folder->write_text(kRecipeFileName, r.text);
    folder->commit();
  });

  MergeReport rep;
  uint64_t local[2] = {bytes_read, bytes_written}, global[2] = {0, 0};
  MPI_CHECK(MPI_Allreduce(local, global, 2, MPI_UINT64_T, MPI_SUM, comm));
  rep.bytes_read = global[0];
  rep.bytes_written = global[1];
  rep.tensors = specs.size();
  rep.shards = plan.file_names.size();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return rep;
}

}  // namespace kintsugi
