// `kintsugi bench merge`: memory bandwidth (STREAM triad, and the same triad
// with streaming stores), the in-memory fused kernel, the end-to-end
// file-to-file merge, and the naive alternative (one checkpoint at a time into
// an fp32 accumulator), in GB/s of bytes read + written, each as a ratio to
// the triad.
#include <fcntl.h>
#include <omp.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "kintsugi/cli/bench.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/common/huge_pages.hpp"
#include "kintsugi/common/median.hpp"
#include "kintsugi/common/system.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/io/dtype.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "kintsugi/kernels/merge_kernels.hpp"
#include "kintsugi/merge/engine.hpp"

namespace kintsugi::cli {
namespace {
namespace fs = std::filesystem;

struct BenchArgs {
  size_t checkpoints = 4;
  size_t mib = 256;
  std::string dtype = "bf16";
  int repeat = 5;
  bool json = false;
  std::string dir;
  std::string isa;      // "" (the copy that runs), "all", or copies separated by commas
  std::string methods;  // "" (none), "all", or merge methods separated by commas
};

// Seconds `f` takes on the slowest rank when all ranks start it together: with
// P ranks on a node, the in-memory figures are then the node's aggregate
// (P x bytes / that time), comparable with the distributed file merge.
template <typename F>
double seconds_of(F&& f) {
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  const double t0 = steady_seconds();
  f();
  double t = steady_seconds() - t0;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  return t;
}

// STREAM triad a = b + s c over arrays of `bytes` each; counts 3 x bytes.
// run() writes a through the cache, as STREAM built by GCC does: each line of
// a is read before it is written (a fourth transfer the figure does not
// count). run_streaming() writes a with streaming stores, which skip that
// read, as the fused kernel's large outputs do: its figure is the bandwidth
// of a kernel whose counted bytes are all the bytes it moves (x86-64 only).
class Triad {
 public:
  explicit Triad(size_t bytes) : n_(bytes / sizeof(float)), a_(n_), b_(n_), c_(n_) {
    const auto nn = static_cast<long long>(n_);
#pragma omp parallel for schedule(static)
    for (long long j = 0; j < nn; ++j) {
      a_[j] = 0.0f;
      b_[j] = 1.0f;
      c_[j] = 2.0f;
    }
  }
  void run() {
    const auto nn = static_cast<long long>(n_);
    const float s = 3.0f;
    float* a = a_.data();
    const float* b = b_.data();
    const float* c = c_.data();
    // simd: vectorized whatever the CLI's optimization level (-O2, whose
    // cost model leaves loops with a remainder scalar), as STREAM at -O3 is.
#pragma omp parallel for simd schedule(static)
    for (long long j = 0; j < nn; ++j) a[j] = b[j] + s * c[j];
    KS_CHECK(a_[n_ / 2] == 7.0f, "triad result");
  }
  static constexpr bool kStreaming =
#if defined(__x86_64__)
      true;
#else
      false;
#endif
  // Four floats per SSE streaming store (x86-64's baseline; the write
  // combining buffers merge them into whole lines; the arrays are 16-byte
  // aligned at least: operator new, or 2 MiB for huge pages),
  // with s = 2, so that its result (5) tells its run from run()'s (7).
  void run_streaming() {
#if defined(__x86_64__)
    const auto nv = static_cast<long long>(n_ / 4);
    const __m128 s = _mm_set1_ps(2.0f);
    float* a = a_.data();
    const float* b = b_.data();
    const float* c = c_.data();
#pragma omp parallel
    {
#pragma omp for schedule(static)
      for (long long v = 0; v < nv; ++v)
        _mm_stream_ps(a + 4 * v,
                      _mm_add_ps(_mm_load_ps(b + 4 * v), _mm_mul_ps(s, _mm_load_ps(c + 4 * v))));
      _mm_sfence();  // this thread's streamed lines visible before the threads join
    }
    for (size_t j = static_cast<size_t>(nv) * 4; j < n_; ++j) a[j] = b[j] + 2.0f * c[j];
    KS_CHECK(a_[n_ / 2] == 5.0f && a_[n_ - 1] == 5.0f, "streaming triad result");
#endif
  }
  double bytes() const {
    return 3.0 * static_cast<double>(n_ * sizeof(float));
  }

 private:
  size_t n_;
  // On huge pages, as the kernel's inputs and output (huge_pages.hpp).
  HugeVector<float> a_, b_, c_;
};

constexpr size_t kFileParts = 8;    // tensors per bench checkpoint
constexpr size_t kBenchRow = 4096;  // their row length, where it divides them

void check_same(std::span<const std::byte> want, std::span<const std::byte> got, size_t es,
                const std::string& a, const std::string& b) {
  if (got.size() != want.size())
    throw_runtime("bench merge: {} gave {} bytes, {} gave {}", a, want.size(), b, got.size());
  const auto m = std::mismatch(want.begin(), want.end(), got.begin());
  if (m.first != want.end())
    throw_runtime("bench merge: {} and {} disagree at element {}", a, b,
                  static_cast<size_t>(m.first - want.begin()) / es);
}

// Writes `bytes` to a new file as the engine does (ftruncate, positional
// writes of its chunk size, fsync), then removes it outside the timing.
double page_cache_write_seconds(const fs::path& p, std::span<const std::byte> bytes, size_t es) {
  fs::remove(p);
  const double t0 = steady_seconds();
  const int fd = ::open(p.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_runtime("bench merge: cannot create {}: {}", p.string(), std::strerror(errno));
  bool ok = ::ftruncate(fd, static_cast<off_t>(bytes.size())) == 0;
  const size_t chunk = MergeOptions{}.chunk_elems * es;
  for (size_t off = 0; ok && off < bytes.size(); off += chunk) {
    const size_t len = std::min(chunk, bytes.size() - off);
    ok =
        ::pwrite(fd, bytes.data() + off, len, static_cast<off_t>(off)) == static_cast<ssize_t>(len);
  }
  ok = ok && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  const double t = steady_seconds() - t0;
  if (!ok) throw_runtime("bench merge: cannot write {}: {}", p.string(), std::strerror(err));
  fs::remove(p);
  return t;
}

// Maps a (cached) file and touches one byte per page: the page-table cost a
// merge pays before its kernel reads the data.
double first_touch_seconds(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_runtime("bench merge: cannot open {}: {}", p.string(), std::strerror(errno));
  const auto size = static_cast<size_t>(fs::file_size(p));
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED)
    throw_runtime("bench merge: cannot map {}: {}", p.string(), std::strerror(errno));
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const volatile unsigned char* c = static_cast<const unsigned char*>(m);  // every read happens
  const double t0 = steady_seconds();
  for (size_t off = 0; off < size; off += page) (void)c[off];
  const double t = steady_seconds() - t0;
  ::munmap(m, size);
  return t;
}

DType parse_bench_dtype(const std::string& s) {
  if (s == "bf16") return DType::BF16;
  if (s == "fp16" || s == "f16") return DType::F16;
  if (s == "fp32" || s == "f32") return DType::F32;
  throw_input("bench merge: --dtype {}: expected bf16, fp16 or fp32", s);
}

void check_args(const BenchArgs& a) {
  if (a.checkpoints < 1 || a.checkpoints > kMaxMergeInputs)
    throw_input("bench merge: --checkpoints out of range");
  if (a.mib < 1) throw_input("bench merge: --mib must be at least 1");
  if (!a.dir.empty() && fs::exists(a.dir) && !fs::is_directory(a.dir))
    throw_input("bench merge: --dir {}: exists and is not a folder", a.dir);
}

// N inputs of n values each: normal(0, 0.02) in the checkpoint dtype, seeded by input.
// On huge pages, as the pool's shards the service merges (huge_pages.hpp).
std::vector<HugeVector<std::byte>> random_inputs(size_t N, size_t n, DType dt) {
  std::vector<HugeVector<std::byte>> in(N, HugeVector<std::byte>(n * dtype_size(dt)));
  std::vector<float> f(n);
  for (size_t i = 0; i < N; ++i) {
    std::mt19937 rng(static_cast<unsigned>(i + 1));
    std::normal_distribution<float> d(0.0f, 0.02f);
    for (auto& x : f) x = d(rng);
    convert_from_f32(dt, f.data(), in[i].data(), n);
  }
  return in;
}

// The copies of the CPU kernels to measure (--isa): the one that runs by
// default, every copy this CPU runs ("all"), or the named ones.
std::vector<std::string> isas_to_measure(const std::string& isa) {
  const std::vector<std::string_view> here = cpu_kernel_isas();
  if (isa.empty()) return {std::string(cpu_kernel_isa())};
  std::vector<std::string> out;
  if (isa == "all") {
    for (const auto h : here) out.emplace_back(h);
    return out;
  }
  for (size_t at = 0; at <= isa.size();) {
    const size_t comma = std::min(isa.find(',', at), isa.size());
    const std::string name = isa.substr(at, comma - at);
    if (std::find(here.begin(), here.end(), name) == here.end())
      throw_input("bench merge: --isa {}: '{}' is not a copy of the kernels this CPU runs ({})",
                  isa, name, fmt::join(here, ", "));
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
    at = comma + 1;
  }
  return out;
}

// Best seconds of each in-memory measurement; kernel[k] for the k-th copy
// measured. ratio[k] and ratio_nt[k]: the k-th copy's rate over the triad's
// (and the streamed triad's), the median over the repetitions of the ratio
// within each (ratio_nt empty when the streamed triad is not measured).
struct MemorySeconds {
  double triad = 1e300, triad_nt = 1e300, naive = 1e300;
  std::vector<double> kernel, ratio, ratio_nt;
};

// 1-3. Memory bandwidth, the fused kernel into `out` (each copy in `isas`)
// and the naive alternative (N passes over an fp32 accumulator), interleaved
// so that all see the same machine; the best of each is kept. A shared VM's
// bandwidth drifts by tens of percent within a second, so the best triad and
// the best kernel may come from different moments: over 40 repetitions on
// AMD EPYC Zen 4 the best of each gave the kernel 0.90 of the triad, while
// the median of the ratios of a kernel run to the triad run just before it
// gave 1.01 (quartiles 0.95 and 1.09), and best-of figures read 0.82 to 1.28
// in eight runs within a minute. So each copy's run follows a triad run of
// its own, and its ratio is the median over the repetitions of the pair's.
// Every copy's output is checked. The copy that runs by default is selected
// again at the end (the file merge uses it).
MemorySeconds time_in_memory(Triad& triad, const std::vector<HugeVector<std::byte>>& in, DType dt,
                             const std::vector<float>& w, HugeVector<std::byte>& out, int repeat,
                             const std::vector<std::string>& isas) {
  const size_t N = in.size(), es = dtype_size(dt), n = out.size() / es;
  std::vector<const void*> ptrs;
  for (const auto& v : in) ptrs.push_back(v.data());
  HugeVector<std::byte> out_naive(n * es);
  std::vector<float> acc(n), tmp(n);
  const auto nn = static_cast<long long>(n);
  auto naive_merge = [&] {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (size_t i = 0; i < N; ++i) {
      convert_to_f32(dt, in[i].data(), tmp.data(), n);
      const float wi = w[i];
#pragma omp parallel for simd schedule(static)
      for (long long j = 0; j < nn; ++j) acc[j] += wi * tmp[j];
    }
    convert_from_f32(dt, acc.data(), out_naive.data(), n);
  };
  const std::string runs(cpu_kernel_isa());
  // Bytes the triad counts per byte the kernel moves: a time ratio becomes a
  // rate ratio.
  const double scale = triad.bytes() / static_cast<double>((N + 1) * n * es);
  MemorySeconds t;
  t.kernel.assign(isas.size(), 1e300);
  std::vector<std::vector<double>> pairs(isas.size()), pairs_nt(isas.size());
  for (int r = 0; r < repeat; ++r) {
    for (size_t k = 0; k < isas.size(); ++k) {
      const double tt = seconds_of([&] { triad.run(); });
      t.triad = std::min(t.triad, tt);
      double tn = 0.0;
      if (Triad::kStreaming) {
        tn = seconds_of([&] { triad.run_streaming(); });
        t.triad_nt = std::min(t.triad_nt, tn);
      }
      KS_CHECK(set_cpu_kernel_isa(isas[k]), "a copy of the kernels this CPU runs");
      const double tk = seconds_of([&] { fused_weighted_sum(ptrs, dt, w, out.data(), dt, n); });
      t.kernel[k] = std::min(t.kernel[k], tk);
      pairs[k].push_back(tt / tk / scale);
      if (Triad::kStreaming) pairs_nt[k].push_back(tn / tk / scale);
    }
    t.naive = std::min(t.naive, seconds_of(naive_merge));
  }
  for (size_t k = 0; k < isas.size(); ++k) {
    t.ratio.push_back(median_of(pairs[k]));
    if (Triad::kStreaming) t.ratio_nt.push_back(median_of(pairs_nt[k]));
  }
  // Every result is checked: the naive loop does the same fp32 operations in
  // the same order, so each copy must agree with it bit for bit (and `out`
  // leaves holding that result, whichever copy wrote it last).
  for (size_t k = 0; k < isas.size(); ++k) {
    KS_CHECK(set_cpu_kernel_isa(isas[k]), "a copy of the kernels this CPU runs");
    std::fill(out.begin(), out.end(), std::byte{0});
    fused_weighted_sum(ptrs, dt, w, out.data(), dt, n);
    check_same(out, out_naive, es, fmt::format("the fused kernel ({})", isas[k]),
               "the naive merge");
  }
  KS_CHECK(set_cpu_kernel_isa(runs), "the default copy of the kernels");
  return t;
}

// Rank 0 writes the inputs as N single-file checkpoints of kFileParts
// tensors each (dir/ckpt<i>) and a linear recipe of them (dir/recipe.yaml).
void write_bench_pool(const fs::path& dir, const std::vector<HugeVector<std::byte>>& in, DType dt,
                      size_t n) {
  const size_t N = in.size(), es = dtype_size(dt);
  fs::create_directories(dir);
  const size_t parts = kFileParts, per = n / parts;
  for (size_t i = 0; i < N; ++i) {
    std::vector<TensorData> td;
    for (size_t p = 0; p < parts; ++p) {
      const size_t cnt = p + 1 == parts ? n - per * (parts - 1) : per;
      TensorData t;
      // Rows of 4096 (a hidden size) where they fit: methods with per-row
      // statistics (della, nuslerp) see the shapes of a real checkpoint.
      std::vector<int64_t> shape = {static_cast<int64_t>(cnt)};
      if (cnt % kBenchRow == 0)
        shape = {static_cast<int64_t>(cnt / kBenchRow), static_cast<int64_t>(kBenchRow)};
      t.spec = {fmt::format("model.layers.{}.mlp.weight", p), dt, shape};
      t.bytes.assign(in[i].begin() + static_cast<long>(p * per * es),
                     in[i].begin() + static_cast<long>((p * per + cnt) * es));
      td.push_back(std::move(t));
    }
    fs::create_directories(dir / fmt::format("ckpt{}", i));
    write_safetensors(dir / fmt::format("ckpt{}", i) / "model.safetensors", td);
  }
  std::string y = "merge_method: linear\nmodels:\n";
  for (size_t i = 0; i < N; ++i)
    y += fmt::format("  - model: ckpt{}\n    parameters: {{weight: 1.0}}\n", i);
  FILE* f = std::fopen((dir / "recipe.yaml").c_str(), "w");
  KS_CHECK(f != nullptr, "write the bench recipe");
  std::fputs(y.c_str(), f);
  std::fclose(f);
}

// The merged tensors' bytes (rank 0), in the bench pool's order.
std::vector<std::byte> merged_bytes(const fs::path& folder) {
  const HfCheckpoint merged = HfCheckpoint::open(folder);
  std::vector<std::byte> got;
  for (size_t p = 0; p < kFileParts; ++p) {
    const auto& t = merged.info(fmt::format("model.layers.{}.mlp.weight", p));
    const auto b = merged.file_of(t.name).bytes(t);
    got.insert(got.end(), b.begin(), b.end());
  }
  return got;
}

struct FileMerge {
  double seconds = 1e300;  // best of the timed runs
  MergeReport report;
};

// 4. File to file: `kintsugi merge` of dir/recipe.yaml into dir/out on every
// rank, best of `repeat` runs after one that warms the page cache; rank 0
// checks the merged tensors against the fused kernel's `out`.
FileMerge time_file_merge(const fs::path& dir, std::span<const std::byte> out, size_t es,
                          int repeat) {
  const int rank = world_rank();
  const Recipe recipe = parse_recipe_file(dir / "recipe.yaml");
  MergeOptions mo;
  mo.out_dir = dir / "out";
  mo.progress = false;
  FileMerge fm;
  for (int r = 0; r < repeat + 1; ++r) {  // the first run warms the page cache
    // Each run writes a new folder, as a user's merge does; removing the
    // previous one (freeing its pages) is not part of the merge.
    if (rank == 0) fs::remove_all(mo.out_dir);
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    const double t0 = steady_seconds();
    fm.report = run_merge(recipe, mo, MPI_COMM_WORLD);
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    if (r > 0) fm.seconds = std::min(fm.seconds, steady_seconds() - t0);
  }
  if (rank == 0)
    check_same(out, merged_bytes(mo.out_dir), es, "the fused kernel", "the file-to-file merge");
  return fm;
}

// 6. Each merge method (--methods) file to file over the same pool: ckpt0 is
// the base of the methods that need one (and core_space's, an input of its
// mean), the others its models (slerp, nearswap, arcee_fusion: the first;
// nuslerp: ckpt0 and ckpt1 without a base; passthrough: ckpt0 alone; linear,
// multislerp, karcher, encoder_decoder_weighted: all of them), with
// parameters that make the sparsifying ones do their work (density 0.5,
// select_topk 0.5, cabs 2:4). Timed as the linear merge (best of `repeat` after a
// warm-up run); bytes are what the engine read and wrote.
struct MethodMerge {
  std::string method;
  size_t inputs = 0;
  double seconds = 1e300;
  MergeReport report;
};

std::vector<std::string> methods_to_measure(const std::string& list, size_t N) {
  // Every merge method, in the order of the recipe's method table.
  const auto names = merge_method_names();
  const std::vector<std::string> every(names.begin(), names.end());
  std::vector<std::string> out;
  if (list.empty()) return out;
  if (list == "all") {
    out = every;
  } else {
    for (size_t at = 0; at <= list.size();) {
      const size_t comma = std::min(list.find(',', at), list.size());
      std::string m = list.substr(at, comma - at);
      if (std::find(every.begin(), every.end(), m) == every.end())
        throw_input("bench merge: --methods {}: unknown merge method '{}' (known: all, {})", list,
                    m, fmt::join(every, ", "));
      if (std::find(out.begin(), out.end(), m) == out.end()) out.push_back(std::move(m));
      at = comma + 1;
    }
  }
  // model_stock needs two models besides the base.
  if (N < 3) std::erase(out, std::string("model_stock"));
  if (N < 2)
    std::erase_if(out, [](const std::string& m) {
      return m != "linear" && m != "passthrough" && m != "multislerp" && m != "karcher" &&
             m != "encoder_decoder_weighted";
    });
  return out;
}

std::string method_recipe(const std::string& m, size_t N) {
  const bool base = m != "linear" && m != "passthrough" && m != "multislerp" && m != "karcher" &&
                    m != "nuslerp" && m != "encoder_decoder_weighted";
  size_t first = base ? 1 : 0, last = N;  // models ckpt[first, last)
  if (m == "slerp" || m == "nearswap" || m == "arcee_fusion") last = 2;
  if (m == "nuslerp") last = first + 2;
  if (m == "passthrough") last = 1;
  std::string y = fmt::format("merge_method: {}\n", m);
  if (base) y += "base_model: ckpt0\n";
  if (m == "slerp") y += "parameters: {t: 0.5}\n";
  if (m == "nearswap") y += "parameters: {t: 0.001}\n";
  if (m == "sce") y += "parameters: {select_topk: 0.5}\n";
  if (m == "lrp") y += "parameters: {density: 0.5}\n";
  if (m == "cabs") y += "parameters: {default_n_val: 2, default_m_val: 4}\n";
  const bool weighted = m != "model_stock" && m != "slerp" && m != "nearswap" && m != "sce" &&
                        m != "karcher" && m != "passthrough" && m != "ram" && m != "ramplus_tl" &&
                        m != "arcee_fusion" && m != "core_space" && m != "encoder_decoder_weighted";
  const bool density = m == "ties" || m == "dare_linear" || m == "dare_ties" ||
                       m.rfind("breadcrumbs", 0) == 0 || m.rfind("della", 0) == 0;
  y += "models:\n";
  for (size_t i = first; i < last; ++i) {
    y += fmt::format("  - model: ckpt{}\n", i);
    if (weighted || density)
      y += fmt::format("    parameters: {{{}{}}}\n", weighted ? "weight: 1.0" : "",
                       density ? ", density: 0.5" : "");
    if (m == "encoder_decoder_weighted")
      y += "    parameters: {encoder_weight: 1.0, decoder_weight: 1.0}\n";
  }
  return y;
}

// Verification: every run of a method writes the same bytes (the first,
// untimed, run is the reference); linear equals the fused kernel's `out` and
// passthrough the first input. The methods' values themselves are held to
// independent references by the tests (test/e2e/merge_*_ref.py).
MethodMerge time_method_merge(const fs::path& dir, const std::string& method, size_t N,
                              std::span<const std::byte> out, size_t es, int repeat) {
  const int rank = world_rank();
  const fs::path file = dir / fmt::format("recipe-{}.yaml", method);
  if (rank == 0) {
    FILE* f = std::fopen(file.c_str(), "w");
    KS_CHECK(f != nullptr, "write a bench recipe");
    std::fputs(method_recipe(method, N).c_str(), f);
    std::fclose(f);
  }
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  const Recipe recipe = parse_recipe_file(file);
  MergeOptions mo;
  mo.out_dir = dir / fmt::format("out-{}", method);
  mo.progress = false;
  MethodMerge mm;
  mm.method = method;
  mm.inputs = recipe.models.size() + (recipe.base_model ? 1 : 0);
  std::vector<std::byte> first;
  for (int r = 0; r < repeat + 1; ++r) {
    if (rank == 0) fs::remove_all(mo.out_dir);
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    const double t0 = steady_seconds();
    mm.report = run_merge(recipe, mo, MPI_COMM_WORLD);
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    if (r > 0) mm.seconds = std::min(mm.seconds, steady_seconds() - t0);
    if (rank != 0) continue;
    auto got = merged_bytes(mo.out_dir);
    if (r == 0)
      first = std::move(got);
    else
      check_same(first, got, es, fmt::format("{} (run 1)", method),
                 fmt::format("{} (run {})", method, r + 1));
  }
  if (rank == 0) {
    if (method == "linear") check_same(out, first, es, "the fused kernel", "linear");
    if (method == "passthrough")
      check_same(merged_bytes(dir / "ckpt0"), first, es, "the first input", "passthrough");
    fs::remove_all(mo.out_dir);
  }
  return mm;
}

struct PageCacheSeconds {
  double write = 1e300, first_touch = 1e300;
  double cat_cp = 1e300;  // `cat` of the inputs, `cp` of the output, `sync`
  uint64_t cat_cp_bytes = 0;
};

// Reads file p whole through a buffer, as `cat p > /dev/null` does; with
// `to`, writes what it reads there (a new file, fsynced), as `cp p to &&
// sync to` does. Returns the bytes read.
uint64_t cat_file(const fs::path& p, const fs::path* to, std::vector<char>& buf) {
  const int in = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) throw_runtime("bench merge: cannot open {}: {}", p.string(), std::strerror(errno));
  int out = -1;
  if (to) {
    out = ::open(to->c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
      ::close(in);
      throw_runtime("bench merge: cannot create {}: {}", to->string(), std::strerror(errno));
    }
  }
  uint64_t total = 0;
  bool ok = true;
  for (ssize_t got; ok && (got = ::read(in, buf.data(), buf.size())) != 0;) {
    ok = got > 0;
    for (ssize_t put = 0; ok && out >= 0 && put < got;) {  // write() may take part of it
      const ssize_t w = ::write(out, buf.data() + put, static_cast<size_t>(got - put));
      ok = w > 0;
      put += w;
    }
    if (ok) total += static_cast<uint64_t>(got);
  }
  ok = ok && (out < 0 || ::fsync(out) == 0);
  const int err = errno;
  ::close(in);
  if (out >= 0) ::close(out);
  if (!ok) throw_runtime("bench merge: cannot copy {}: {}", p.string(), std::strerror(err));
  return total;
}

// The page-cache reference of issue #17, as `cat in_0 ... in_N-1 >
// /dev/null; cp out copy && sync copy` would take: the file merge reads as
// many bytes and writes as many. Bytes: the inputs and the output, once each.
double cat_cp_seconds(const fs::path& dir, size_t N, uint64_t& bytes) {
  std::vector<char> buf(size_t{1} << 20);  // a 1 MiB buffer per read(), close to cat's and cp's
  const fs::path copy = dir / "catcp.bin";
  const double t0 = steady_seconds();
  bytes = 0;
  for (size_t i = 0; i < N; ++i)
    bytes += cat_file(dir / fmt::format("ckpt{}", i) / "model.safetensors", nullptr, buf);
  for (const auto& e : fs::directory_iterator(dir / "out"))
    if (e.path().extension() == ".safetensors") bytes += cat_file(e.path(), &copy, buf);
  const double t = steady_seconds() - t0;
  fs::remove(copy);
  return t;
}

// 5. What the page cache itself costs on this file system, measured the same
// way (rank 0): writing a new file of one output's size (positional writes in
// the engine's chunks, fsync), and first touch of a cached input's mapping.
PageCacheSeconds time_page_cache(const fs::path& dir, std::span<const std::byte> out, size_t es,
                                 size_t N, int repeat) {
  PageCacheSeconds t;
  if (world_rank() == 0)
    for (int r = 0; r < repeat; ++r) {
      t.write = std::min(t.write, page_cache_write_seconds(dir / "pagecache.bin", out, es));
      t.first_touch =
          std::min(t.first_touch, first_touch_seconds(dir / "ckpt0" / "model.safetensors"));
      t.cat_cp = std::min(t.cat_cp, cat_cp_seconds(dir, N, t.cat_cp_bytes));
    }
  return t;
}

// The figures, in GB/s of bytes read + written; kernel is the copy that runs
// by default (or the first measured), kernels[k] each copy measured.
struct MergeFigures {
  double stream, stream_nt, kernel, naive, file, write, map, ceiling;  // stream_nt 0: not measured
  double cat_cp;  // 0: not measured (ranks other than 0)
  std::vector<double> kernels;
  // Each copy's rate over the triad's, and over the streamed triad's (empty
  // when not measured): medians of paired repetitions (MemorySeconds).
  std::vector<double> ratios, ratios_nt;
  double ratio, ratio_nt;  // the copy that runs: its entries (ratio_nt 0: not measured)
};

MergeFigures figures_of(const Triad& triad, const MemorySeconds& mem, size_t default_k,
                        const FileMerge& fm, const PageCacheSeconds& pc, size_t N,
                        size_t out_bytes) {
  const double useful = static_cast<double>((N + 1) * out_bytes);  // bytes read + written
  const double ranks = world_size();
  MergeFigures f;
  f.stream = ranks * triad.bytes() / mem.triad / 1e9;
  f.stream_nt = Triad::kStreaming ? ranks * triad.bytes() / mem.triad_nt / 1e9 : 0.0;
  for (const double k : mem.kernel) f.kernels.push_back(ranks * useful / k / 1e9);
  f.kernel = f.kernels[default_k];
  f.ratios = mem.ratio;
  f.ratios_nt = mem.ratio_nt;
  f.ratio = f.ratios[default_k];
  f.ratio_nt = f.ratios_nt.empty() ? 0.0 : f.ratios_nt[default_k];
  f.naive = ranks * useful / mem.naive / 1e9;
  f.file = static_cast<double>(fm.report.bytes_read + fm.report.bytes_written) / fm.seconds / 1e9;
  f.write = static_cast<double>(out_bytes) / pc.write / 1e9;
  f.map = static_cast<double>(out_bytes) / pc.first_touch / 1e9;
  f.cat_cp = pc.cat_cp_bytes > 0 ? static_cast<double>(pc.cat_cp_bytes) / pc.cat_cp / 1e9 : 0.0;
  // With no overlap between them: the kernel, N inputs' first touch, one
  // output's write.
  // (A single-rank model: with P ranks the page-cache work is spread over
  // processes in ways one rank's measurement does not tell.)
  f.ceiling =
      useful / (mem.kernel[default_k] + static_cast<double>(N) * pc.first_touch + pc.write) / 1e9;
  return f;
}

// Rank 0: the table and, with --json, one JSON object as the last line.
// The kernels' copy that runs, how it was chosen, and the copies measured.
struct KernelCopies {
  std::string runs, choice;
  std::vector<std::string> measured;
};

void print_figures(const BenchArgs& a, const MergeFigures& f, const FileMerge& fm,
                   const fs::path& dir, const KernelCopies& kc,
                   const std::vector<MethodMerge>& methods) {
  const int threads = omp_get_max_threads();
  const std::string cpu = cpu_model();
  std::printf("bench merge: %zu checkpoints x %zu MiB %s, %d thread(s), %d rank(s)\n",
              a.checkpoints, a.mib, a.dtype.c_str(), threads, world_size());
  const std::string thp = transparent_huge_pages();
  std::printf("  CPU: %s; kernels: %s (%s)\n", cpu.c_str(), kc.runs.c_str(), kc.choice.c_str());
  std::printf("  transparent huge pages: %s (the in-memory buffers ask for them)\n", thp.c_str());
  std::printf(
      "  stream triad          %8.2f GB/s  (best of %d; a kernel's \"of triad\" is the median "
      "over the repetitions of its rate over the triad's just before it)\n",
      f.stream, a.repeat);
  if (f.stream_nt > 0)
    std::printf(
        "  triad, streamed a     %8.2f GB/s  (no read of a's lines before writing them, as the "
        "kernel's outputs of 16 MiB or more)\n",
        f.stream_nt);
  // The copies' names in one column ("[avx512+prefetch]" is the longest).
  size_t width = 9;
  for (const auto& m : kc.measured) width = std::max(width, m.size() + 3);
  for (size_t k = 0; k < kc.measured.size(); ++k) {
    std::printf("  fused kernel %-*s%8.2f GB/s  (%.2f of triad", static_cast<int>(width),
                ("[" + kc.measured[k] + "]").c_str(), f.kernels[k], f.ratios[k]);
    if (!f.ratios_nt.empty()) std::printf(", %.2f of streamed", f.ratios_nt[k]);
    std::printf(")%s\n", kc.measured[k] == kc.runs ? "" : "  (not the copy that runs)");
  }
  std::printf("  naive, N passes fp32  %8.2f GB/s  (%.2f of triad; %.2fx slower than fused)\n",
              f.naive, f.naive / f.stream, f.kernel / f.naive);
  std::printf(
      "  file to file merge    %8.2f GB/s  (%.2f of triad; %.3f s for %.1f MB; output "
      "verified)\n",
      f.file, f.file / f.stream, fm.seconds,
      static_cast<double>(fm.report.bytes_read + fm.report.bytes_written) / 1e6);
  std::printf("  page cache: write %.2f GB/s, first touch of a mapping %.2f GB/s (%s)\n", f.write,
              f.map, dir.c_str());
  std::printf(
      "  cat + cp reference    %8.2f GB/s  (cat of the %zu inputs, cp of the output and sync; file "
      "merge at %.2fx)\n",
      f.cat_cp, a.checkpoints, f.file / f.cat_cp);
  if (world_size() == 1)
    std::printf(
        "  file ceiling          %8.2f GB/s  (kernel + page cache, no overlap; file merge at "
        "%.2f of it)\n",
        f.ceiling, f.file / f.ceiling);
  auto method_gbps = [](const MethodMerge& m) {
    return static_cast<double>(m.report.bytes_read + m.report.bytes_written) / m.seconds / 1e9;
  };
  if (!methods.empty())
    std::printf(
        "  file to file by method (GB/s read + written; ratio to the triad; runs agree):\n");
  for (const auto& m : methods)
    std::printf("    %-24s %2zu inputs %8.2f GB/s  (%.3f of triad; %.3f s)\n", m.method.c_str(),
                m.inputs, method_gbps(m), method_gbps(m) / f.stream, m.seconds);
  if (a.json) {
    auto round3 = [](double v) { return std::round(v * 1000.0) / 1000.0; };
    nlohmann::ordered_json j;
    j["stream_gbps"] = round3(f.stream);
    j["kernel_gbps"] = round3(f.kernel);
    j["kernel_ratio"] = round3(f.ratio);
    j["kernel_ratio_of_bests"] = round3(f.kernel / f.stream);
    j["ratio_pairs"] = a.repeat;
    const bool nt = !f.ratios_nt.empty();
    j["stream_nt_gbps"] = nt ? nlohmann::ordered_json(round3(f.stream_nt)) : nullptr;
    j["kernel_ratio_nt"] = nt ? nlohmann::ordered_json(round3(f.ratio_nt)) : nullptr;
    j["file_gbps"] = round3(f.file);
    j["file_ratio"] = round3(f.file / f.stream);
    j["naive_gbps"] = round3(f.naive);
    j["naive_ratio"] = round3(f.naive / f.stream);
    j["checkpoints"] = a.checkpoints;
    j["mib"] = a.mib;
    j["dtype"] = a.dtype;
    j["threads"] = threads;
    j["ranks"] = world_size();
    j["cpu_model"] = cpu;
    j["transparent_huge_pages"] = thp;
    j["cpu_kernels"] = kc.runs;
    j["cpu_kernel_choice"] = kc.choice;
    nlohmann::ordered_json ks = nlohmann::ordered_json::array();
    for (size_t k = 0; k < kc.measured.size(); ++k)
      ks.push_back({{"isa", kc.measured[k]},
                    {"gbps", round3(f.kernels[k])},
                    {"ratio", round3(f.ratios[k])},
                    {"ratio_nt", nt ? nlohmann::ordered_json(round3(f.ratios_nt[k])) : nullptr}});
    j["kernels"] = ks;
    j["pagecache_write_gbps"] = round3(f.write);
    j["map_first_touch_gbps"] = round3(f.map);
    j["catcp_gbps"] = round3(f.cat_cp);
    j["file_vs_catcp"] = round3(f.file / f.cat_cp);
    j["file_ceiling_gbps"] =
        world_size() == 1 ? nlohmann::ordered_json(round3(f.ceiling)) : nullptr;
    nlohmann::ordered_json ms = nlohmann::ordered_json::array();
    for (const auto& m : methods)
      ms.push_back({{"method", m.method},
                    {"inputs", m.inputs},
                    {"gbps", round3(method_gbps(m))},
                    {"ratio", round3(method_gbps(m) / f.stream)},
                    {"seconds", round3(m.seconds)}});
    j["methods"] = ms;
    std::printf("%s\n", j.dump().c_str());
  }
}

int run_bench(const BenchArgs& a) {
  const DType dt = parse_bench_dtype(a.dtype);
  check_args(a);
  (void)methods_to_measure(a.methods, a.checkpoints);  // a bad --methods fails before any work
  const size_t N = a.checkpoints;
  const size_t es = dtype_size(dt);
  const size_t n = a.mib * (size_t{1} << 20) / es;  // values per input

  Triad triad(std::max<size_t>(a.mib, 128) << 20);
  auto in = random_inputs(N, n, dt);
  // The weights `kintsugi merge` derives from the bench's recipe (1 each,
  // normalized in double), so the file merge must reproduce `out` exactly.
  const std::vector<float> w(N, static_cast<float>(1.0 / static_cast<double>(N)));
  HugeVector<std::byte> out(n * es);
  KernelCopies kc;
  kc.measured = isas_to_measure(a.isa);
  kc.runs = cpu_kernel_isa();  // chooses the copy (timing both, on an AVX2 CPU) before any timing
  kc.choice = cpu_kernel_choice();
  const auto it = std::find(kc.measured.begin(), kc.measured.end(), kc.runs);
  const size_t default_k =
      it == kc.measured.end() ? 0 : static_cast<size_t>(it - kc.measured.begin());
  const MemorySeconds mem = time_in_memory(triad, in, dt, w, out, a.repeat, kc.measured);

  const fs::path dir =
      a.dir.empty() ? fs::temp_directory_path() / fmt::format("kintsugi-bench-merge-{}", ::getpid())
                    : fs::path(a.dir);
  if (world_rank() == 0) write_bench_pool(dir, in, dt, n);
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  in.clear();  // the file merge reads them from the files
  in.shrink_to_fit();
  const FileMerge fm = time_file_merge(dir, out, es, a.repeat);
  const PageCacheSeconds pc = time_page_cache(dir, out, es, N, a.repeat);
  std::vector<MethodMerge> methods;
  for (const auto& m : methods_to_measure(a.methods, N))
    methods.push_back(time_method_merge(dir, m, N, out, es, a.repeat));
  const MergeFigures f = figures_of(triad, mem, default_k, fm, pc, N, n * es);
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  if (world_rank() == 0 && a.dir.empty()) fs::remove_all(dir);

  if (world_rank() == 0) print_figures(a, f, fm, dir, kc, methods);
  return 0;
}

BenchRegistration merge_bench{
    {"merge", "Merge throughput: triad bandwidth, fused kernel, file-to-file, naive",
     [](CLI::App& sub) {
       auto a = std::make_shared<BenchArgs>();
       sub.add_option("--checkpoints", a->checkpoints, "Number of inputs N")->default_val(4);
       sub.add_option("--mib", a->mib, "Size of each input in MiB")->default_val(256);
       sub.add_option("--dtype", a->dtype, "bf16, fp16 or fp32")->default_val("bf16");
       sub.add_option("--repeat", a->repeat,
                      "Timed repetitions (GB/s: the best; a kernel's ratio to the triad: the "
                      "median of the repetitions' pairs)")
           ->default_val(5)
           ->check(CLI::Range(1, 1000));
       sub.add_option("--dir", a->dir, "Folder for the file benchmark (default: a temp folder)");
       sub.add_option("--isa", a->isa,
                      "Copies of the CPU kernels to measure side by side: all, or names "
                      "separated by commas (default: the copy that runs)");
       sub.add_option("--methods", a->methods,
                      "Also merge the pool file to file with these merge methods: all, or "
                      "names separated by commas");
       sub.add_flag("--json", a->json, "Print a JSON object as the last line");
       return std::function<int()>([a] { return run_bench(*a); });
     }}};

}  // namespace
}  // namespace kintsugi::cli
