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
#include "kintsugi/kernels/merge_kernels.hpp"
#include "kintsugi/merge/tensor_merge.hpp"
#include "kintsugi/pool/flat_plan.hpp"
#include "kintsugi/pool/pool.hpp"

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

// Per-tensor method settings from the recipe.
TensorMethod resolve_method(const Recipe& r, const std::vector<const RecipeModel*>& models,
                            const std::string& name, double t, uint64_t seed) {
  TensorMethod m;
  m.method = r.method;
  m.seed = seed;
  const bool task = r.method == MergeMethod::TaskArithmetic || r.method == MergeMethod::Ties ||
                    r.method == MergeMethod::DareLinear || r.method == MergeMethod::DareTies ||
                    r.method == MergeMethod::Breadcrumbs ||
                    r.method == MergeMethod::BreadcrumbsTies;
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
    if (r.method == MergeMethod::Breadcrumbs || r.method == MergeMethod::BreadcrumbsTies)
      for (const auto* rm : models) {
        const double g = recipe_param(r, rm, "gamma", name, t, 0.01);  // mergekit's default
        if (g < 0.0 || g > 1.0)
          throw_input("{}: gamma {} for tensor {} is outside [0, 1]", rm->where, g, name);
        m.gamma.push_back(g);
      }
    return m;
  }
  if (r.method == MergeMethod::Slerp || r.method == MergeMethod::Nearswap)
    m.t = recipe_param(r, nullptr, "t", name, t, std::nullopt);
  if (r.method == MergeMethod::Nuslerp) {
    // mergekit: t = weight_1 / (weight_0 + weight_1), 0.5 when that sum is ~0.
    const double w0 = recipe_param(r, models[0], "weight", name, t, std::nullopt);
    const double w1 = recipe_param(r, models[1], "weight", name, t, std::nullopt);
    m.t = std::fabs(w0 + w1) < 1e-6 ? 0.5 : w1 / (w0 + w1);
    m.flatten = recipe_param(r, nullptr, "nuslerp_flatten", name, t, 1.0) != 0.0;
    m.row_wise = recipe_param(r, nullptr, "nuslerp_row_wise", name, t, 0.0) != 0.0;
  }
  if (r.method == MergeMethod::Multislerp) {
    m.normalize_weights = recipe_param(r, nullptr, "normalize_weights", name, t, 1.0) != 0.0;
    m.eps = recipe_param(r, nullptr, "eps", name, t, 1e-8);
    if (!(m.eps > 0.0))
      throw_input("{}: multislerp: eps {} for tensor {} is not > 0", r.file.string(), m.eps, name);
    double sum = 0;
    for (const auto* rm : models) {
      m.sphere_weights.push_back(recipe_param(r, rm, "weight", name, t, std::nullopt));
      sum += m.sphere_weights.back();
    }
    if (m.normalize_weights && models.size() > 1) {
      if (std::fabs(sum) < 1e-12)
        throw_input(
            "{}: multislerp: the weights of tensor {} sum to zero (set normalize_weights: false)",
            r.file.string(), name);
      for (double& w : m.sphere_weights) w /= sum;
    }
  }
  if (r.method == MergeMethod::Karcher) {
    const double it = recipe_param(r, nullptr, "max_iter", name, t, 10.0);
    if (it < 0.0 || it != std::floor(it))
      throw_input("{}: karcher: max_iter {} for tensor {} is not a whole number >= 0",
                  r.file.string(), it, name);
    m.max_iter = static_cast<int64_t>(it);
    m.tol = recipe_param(r, nullptr, "tol", name, t, 1e-5);
    if (m.tol < 0.0)
      throw_input("{}: karcher: tol {} for tensor {} is negative", r.file.string(), m.tol, name);
  }
  return m;
}

// The recipe's checkpoints, opened: the base (when the method uses one) and
// the models that are not the base, checked for count and compatibility.
struct MergeInputs {
  std::optional<HfCheckpoint> base;
  std::vector<const RecipeModel*> models;  // recipe entries of `ckpts`, same order
  std::vector<HfCheckpoint> ckpts;
  // The checkpoint whose names, shapes, config and extra files the output takes.
  const HfCheckpoint& reference() const { return base ? *base : ckpts[0]; }
};

MergeInputs open_inputs(const Recipe& r) {
  MergeInputs in;
  if (r.base_model && r.method != MergeMethod::Linear) in.base = HfCheckpoint::open(*r.base_model);
  for (const auto& rm : r.models) {
    if (in.base && same_path(rm.path, *r.base_model)) continue;
    in.models.push_back(&rm);
    in.ckpts.push_back(HfCheckpoint::open(rm.path));
  }
  const std::string method(merge_method_name(r.method));
  const size_t n = in.ckpts.size();
  if ((r.method == MergeMethod::Slerp || r.method == MergeMethod::Nearswap) && n != 1)
    throw_input("{}: {} merges the base with exactly one other model, got {}", r.file.string(),
                method, n);
  if (r.method == MergeMethod::Nuslerp && n != 2)
    throw_input("{}: nuslerp merges exactly two models (and an optional base_model), got {}{}",
                r.file.string(), n, in.base ? " besides the base" : "");
  if (r.method == MergeMethod::ModelStock && n < 2)
    throw_input("{}: model_stock needs at least two models besides the base, got {}",
                r.file.string(), n);
  if (n == 0)
    throw_input("{}: {} needs at least one model besides the base", r.file.string(), method);
  if (n > kMaxMergeInputs)
    throw_input("{}: {} models, at most {} supported", r.file.string(), n, kMaxMergeInputs);
  std::vector<const HfCheckpoint*> all;
  if (in.base) all.push_back(&*in.base);
  for (const auto& c : in.ckpts) all.push_back(&c);
  check_pool_compatible(all);
  return in;
}

// Everything the merge reads, which its output must stay apart from.
std::vector<NamedPath> input_paths(const Recipe& r, const MergeOptions& opt) {
  std::vector<NamedPath> in;
  if (!r.file.empty()) in.push_back({"recipe", r.file});
  if (r.base_model) in.push_back({"base model", *r.base_model});
  for (const auto& m : r.models) in.push_back({"checkpoint", m.path});
  for (const auto& p : opt.other_inputs) in.push_back(p);
  return in;
}

// What the output holds: every tensor of the reference (floating tensors in
// the recipe's dtype), laid out in shards.
struct OutputPlan {
  std::vector<TensorSpec> specs;  // in the reference's (sorted) tensor order
  ShardedPlan files;
  std::optional<DType> out_float;  // the recipe's dtype for floating tensors
  int64_t num_layers = 0;          // for gradients over layers
};

int64_t num_layers_of(const HfCheckpoint& ref) {
  const auto& cfg = ref.config();
  if (cfg.is_object() && cfg.contains("num_hidden_layers") &&
      cfg["num_hidden_layers"].is_number_integer() && cfg["num_hidden_layers"].get<int64_t>() > 0)
    return cfg["num_hidden_layers"].get<int64_t>();
  int64_t n = 0;
  for (const auto& name : ref.tensor_names())
    if (auto l = layer_index(name)) n = std::max(n, *l + 1);
  return n;
}

OutputPlan plan_output(const Recipe& r, const HfCheckpoint& ref, const MergeOptions& opt) {
  OutputPlan out;
  out.out_float = r.out_dtype ? r.out_dtype : r.dtype;
  out.num_layers = num_layers_of(ref);
  for (const auto& n : ref.tensor_names()) {
    const auto& info = ref.info(n);
    const DType od = mergeable(info.dtype) && out.out_float ? *out.out_float : info.dtype;
    out.specs.push_back({n, od, info.shape});
  }
  const Metadata meta = {{"format", "pt"},
                         {"merged_by", "kintsugi"},
                         {"merge_method", std::string(merge_method_name(r.method))},
                         {"recipe_sha256", r.sha256}};
  out.files = plan_sharded(out.specs, meta, opt.max_shard_bytes);
  return out;
}

// The output being written: rank 0 owns the folder and the shard files
// (headers included); the other ranks write their byte ranges into them.
struct OutputFiles {
  std::unique_ptr<HfFolderWriter> folder;                              // rank 0
  std::vector<std::unique_ptr<SafetensorsWriter>> writers;             // rank 0
  std::vector<std::unique_ptr<SafetensorsRangeWriter>> range_writers;  // other ranks

  void pwrite(size_t file, const std::string& tensor, uint64_t offset,
              std::span<const std::byte> bytes) {
    if (!writers.empty())
      writers[file]->pwrite(tensor, offset, bytes);
    else
      range_writers[file]->pwrite(tensor, offset, bytes);
  }
};

OutputFiles create_output(const OutputPlan& plan, const MergeOptions& opt,
                          const std::vector<NamedPath>& inputs, MPI_Comm comm, int rank) {
  OutputFiles out;
  const ShardedPlan& files = plan.files;
  run_on_root(comm, [&] {
    check_output_apart("output folder", opt.out_dir, inputs);
    out.folder = std::make_unique<HfFolderWriter>(opt.out_dir, opt.overwrite);
    for (size_t f = 0; f < files.file_names.size(); ++f)
      // Positional: rank 0 may own no byte of a shard (a small one that
      // holds only another rank's ranges) and still commits it.
      out.writers.push_back(
          std::make_unique<SafetensorsWriter>(out.folder->temp_dir() / files.file_names[f],
                                              files.layouts[f], SafetensorsFill::Positional));
  });
  // Every rank must agree on the temporary folder's name.
  const fs::path tmp_dir =
      broadcast_string(rank == 0 ? out.folder->temp_dir().string() : std::string(), comm);
  // A rank that cannot open the files (a scratch folder it does not share)
  // fails them all, with its message.
  run_everywhere(comm, [&] {
    if (rank != 0)
      for (size_t f = 0; f < files.file_names.size(); ++f)
        out.range_writers.push_back(std::make_unique<SafetensorsRangeWriter>(
            tmp_dir / files.file_names[f], files.layouts[f]));
  });
  return out;
}

// Progress of the merge pass: a bar on a terminal, otherwise one log line
// per tensor group (a layer, or the tensors outside the layers), from rank 0.
class MergeProgress {
 public:
  MergeProgress(const std::string& method, uint64_t elems, bool show)
      : bar_(fmt::format("merge ({})", method), elems, 10.0, show && ::isatty(2)),
        group_log_(show && !::isatty(2)) {}
  void start_tensor(const std::string& name) {
    const auto l = layer_index(name);
    const std::string g = l ? fmt::format("layer {}", *l) : std::string("non-layer tensors");
    if (g != group_) {
      end_group();
      group_ = g;
    }
    ++group_tensors_;
  }
  void advance(uint64_t elems) { bar_.advance(elems); }
  void finish() {
    end_group();
    bar_.finish();
  }

 private:
  void end_group() {
    if (group_log_ && group_tensors_ > 0)
      spdlog::info("merged {} ({} tensors)", group_, group_tensors_);
    group_tensors_ = 0;
  }
  Progress bar_;
  bool group_log_;
  std::string group_;
  size_t group_tensors_ = 0;
};

struct Traffic {
  uint64_t read = 0, written = 0;  // this rank's bytes
};

// Merges this rank's flat share of every tensor and writes it in place.
// Tensors the kernels do not merge (integers, ...) are copied from the reference.
Traffic merge_shares(const Recipe& r, const MergeInputs& in, const OutputPlan& plan,
                     OutputFiles& out, const MergeOptions& opt, MPI_Comm comm, int rank, int size) {
  const HfCheckpoint& ref = in.reference();
  uint64_t my_elems = 0;
  for (const auto& n : ref.tensor_names())
    my_elems += flat_share(ref.info(n).numel(), rank, size).size();
  MergeProgress progress(std::string(merge_method_name(r.method)), my_elems,
                         opt.progress && rank == 0);
  Traffic traffic;
  for (const TensorSpec& spec : plan.specs) {
    const std::string& name = spec.name;
    progress.start_tensor(name);
    const TensorInfo& info = ref.info(name);
    const size_t file = plan.files.shard_of.at(name);
    const ElementRange range = flat_share(info.numel(), rank, size);
    auto write = [&](ElementRange c, std::span<const std::byte> bytes) {
      out.pwrite(file, name, c.begin * dtype_size(spec.dtype), bytes);
      traffic.written += bytes.size();
      progress.advance(c.size());
    };
    if (!mergeable(info.dtype)) {
      const uint64_t es = dtype_size(info.dtype);
      if (!range.empty()) {
        auto src = ref.file_of(name).bytes(info, range.begin * es, range.size() * es);
        write(range, src);
        traffic.read += src.size();
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
    if (in.base) src.base = data_of(*in.base);
    for (const auto& c : in.ckpts) src.models.push_back(data_of(c));
    src.shape = info.shape;
    const TensorMethod m =
        resolve_method(r, in.models, name, layer_t(name, plan.num_layers), opt.seed);
    try {
      merge_tensor(src, m, range, spec.dtype, opt.chunk_elems, comm, write);
    } catch (const std::bad_alloc&) {
      // What a rank holds is a few chunk buffers per input: say which knob sets it.
      throw_runtime(
          "{}: out of memory merging tensor {} in chunks of {} elements per input ({} MiB "
          "as fp32; --chunk-mib): lower the chunk or raise this rank's memory limit",
          opt.out_dir.string(), name, opt.chunk_elems, opt.chunk_elems * 4 >> 20);
    }
    traffic.read += range.size() * dtype_size(info.dtype) * (src.models.size() + (in.base ? 1 : 0));
    spdlog::debug("merged {} ({} elements here)", name, range.size());
  }
  progress.finish();
  return traffic;
}

// Rank 0, after every rank closed its ranges: shard files renamed into the
// temporary folder, the index, config.json (torch_dtype of the output), the
// reference's other files (tokenizer, ...), the recipe; then the folder.
void commit_output(const Recipe& r, const HfCheckpoint& ref, const OutputPlan& plan,
                   OutputFiles& out) {
  for (auto& w : out.writers) w->commit();
  if (plan.files.file_names.size() > 1)
    out.folder->write_text("model.safetensors.index.json", plan.files.index_json());
  if (ref.config().is_object() || plan.out_float) {
    nlohmann::json config = ref.config().is_object() ? ref.config() : nlohmann::json::object();
    DType shown = plan.out_float ? *plan.out_float : DType::F32;
    if (!plan.out_float)
      for (const auto& s : plan.specs)
        if (mergeable(s.dtype)) {
          shown = s.dtype;
          break;
        }
    config["torch_dtype"] = torch_dtype(shown);
    out.folder->write_text("config.json", config.dump(2) + "\n");
  }
  for (const auto& p : ref.passthrough_files()) out.folder->copy_file(p);
  out.folder->write_text(kRecipeFileName, r.text);
  out.folder->commit();
}

}  // namespace

MergeReport run_merge(const Recipe& r, const MergeOptions& opt, MPI_Comm comm) {
  const auto start = std::chrono::steady_clock::now();
  const int rank = comm_rank(comm), size = comm_size(comm);

  const MergeInputs in = open_inputs(r);
  const OutputPlan plan = plan_output(r, in.reference(), opt);
  OutputFiles out = create_output(plan, opt, input_paths(r, opt), comm, rank);
  // A write that fails on one rank (a full disk) fails the merge on all of
  // them; the unfinished output removes its temporary files.
  Traffic traffic;
  run_everywhere(comm, [&] {
    traffic = merge_shares(r, in, plan, out, opt, comm, rank, size);
    for (auto& w : out.range_writers) w->close();
  });
  run_on_root(comm, [&] { commit_output(r, in.reference(), plan, out); });

  MergeReport rep;
  uint64_t global[2] = {traffic.read, traffic.written};
  allreduce_in_place(std::span<uint64_t>(global), MPI_SUM, comm);
  rep.bytes_read = global[0];
  rep.bytes_written = global[1];
  rep.tensors = plan.specs.size();
  rep.shards = plan.files.file_names.size();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return rep;
}

}  // namespace kintsugi
