// `kintsugi bench merge`: memory bandwidth (STREAM triad), the in-memory fused
// kernel, the end-to-end file-to-file merge, and the naive alternative (one
// checkpoint at a time into an fp32 accumulator), in GB/s of bytes read +
// written, each as a ratio to the triad.
#include <omp.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <vector>

#include "kintsugi/cli/bench.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/io/dtype.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "kintsugi/merge/engine.hpp"
#include "kintsugi/merge/kernels.hpp"

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
};

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

template <typename F>
double best_of(int repeat, F&& f) {
  double best = 1e300;
  for (int r = 0; r < repeat; ++r) {
    const double t0 = now();
    f();
    best = std::min(best, now() - t0);
  }
  return best;
}

// STREAM triad a = b + s c over arrays of `bytes` each; counts 3 x bytes.
double stream_triad_gbps(size_t bytes, int repeat) {
  const size_t n = bytes / sizeof(float);
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
  const auto nn = static_cast<long long>(n);
#pragma omp parallel for schedule(static)
  for (long long j = 0; j < nn; ++j) {
    a[j] = 0.0f;
    b[j] = 1.0f;
    c[j] = 2.0f;
  }
  const float s = 3.0f;
  const double t = best_of(repeat, [&] {
#pragma omp parallel for schedule(static)
    for (long long j = 0; j < nn; ++j) a[j] = b[j] + s * c[j];
  });
  KS_CHECK(a[n / 2] == 7.0f, "triad result");
  return 3.0 * static_cast<double>(n * sizeof(float)) / t / 1e9;
}

DType parse_bench_dtype(const std::string& s) {
  if (s == "bf16") return DType::BF16;
  if (s == "fp16" || s == "f16") return DType::F16;
  if (s == "fp32" || s == "f32") return DType::F32;
  throw_input("bench merge: --dtype {}: expected bf16, fp16 or fp32", s);
}

int run_bench(const BenchArgs& a) {
  const DType dt = parse_bench_dtype(a.dtype);
  if (a.checkpoints < 1 || a.checkpoints > kMaxMergeInputs) throw_input("bench merge: --checkpoints out of range");
  if (a.mib < 1) throw_input("bench merge: --mib must be at least 1");
  const int rank = world_rank();
  const size_t N = a.checkpoints;
  const size_t es = dtype_size(dt);
  const size_t n = a.mib * (size_t{1} << 20) / es;
  const double useful = static_cast<double>((N + 1) * n * es);  // bytes read + written

  // 1. Memory bandwidth.
  const double stream = stream_triad_gbps(std::max<size_t>(a.mib, 128) << 20, a.repeat);

  // Inputs: random values in the checkpoint dtype.
  std::vector<std::vector<std::byte>> in(N, std::vector<std::byte>(n * es));
  {
    std::vector<float> f(n);
    for (size_t i = 0; i < N; ++i) {
      std::mt19937 rng(static_cast<unsigned>(i + 1));
      std::normal_distribution<float> d(0.0f, 0.02f);
      for (auto& x : f) x = d(rng);
      convert_from_f32(dt, f.data(), in[i].data(), n);
    }
  }
  std::vector<const void*> ptrs;
  for (auto& v : in) ptrs.push_back(v.data());
  std::vector<float> w(N, 1.0f / static_cast<float>(N));
  std::vector<std::byte> out(n * es);

  // 2. The fused kernel.
  const double tk = best_of(a.repeat, [&] { fused_weighted_sum(ptrs, dt, w, out.data(), dt, n); });
  const double kernel = useful / tk / 1e9;

  // 3. The naive alternative: N passes over an fp32 accumulator.
  std::vector<float> acc(n), tmp(n);
  const auto nn = static_cast<long long>(n);
  const double tn = best_of(a.repeat, [&] {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (size_t i = 0; i < N; ++i) {
      convert_to_f32(dt, in[i].data(), tmp.data(), n);
      const float wi = w[i];
#pragma omp parallel for schedule(static)
      for (long long j = 0; j < nn; ++j) acc[j] += wi * tmp[j];
    }
    convert_from_f32(dt, acc.data(), out.data(), n);
  });
  const double naive = useful / tn / 1e9;

  // 4. File to file: N single-file checkpoints of 8 tensors each, linear recipe.
  const fs::path dir = a.dir.empty() ? fs::temp_directory_path() / fmt::format("kintsugi-bench-merge-{}", ::getpid())
                                     : fs::path(a.dir);
  if (rank == 0) {
    fs::create_directories(dir);
    const size_t parts = 8, per = n / parts;
    for (size_t i = 0; i < N; ++i) {
      std::vector<TensorData> td;
      for (size_t p = 0; p < parts; ++p) {
        const size_t cnt = p + 1 == parts ? n - per * (parts - 1) : per;
        TensorData t;
        t.spec = {fmt::format("model.layers.{}.mlp.weight", p), dt, {static_cast<int64_t>(cnt)}};
        t.bytes.assign(in[i].begin() + static_cast<long>(p * per * es),
                       in[i].begin() + static_cast<long>((p * per + cnt) * es));
        td.push_back(std::move(t));
      }
      fs::create_directories(dir / fmt::format("ckpt{}", i));
      write_safetensors(dir / fmt::format("ckpt{}", i) / "model.safetensors", td);
    }
    std::string y = "merge_method: linear\nmodels:\n";
    for (size_t i = 0; i < N; ++i) y += fmt::format("  - model: ckpt{}\n    parameters: {{weight: 1.0}}\n", i);
    FILE* f = std::fopen((dir / "recipe.yaml").c_str(), "w");
    KS_CHECK(f != nullptr, "write the bench recipe");
    std::fputs(y.c_str(), f);
    std::fclose(f);
  }
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  in.clear();
  in.shrink_to_fit();
  const Recipe recipe = parse_recipe_file(dir / "recipe.yaml");
  MergeOptions mo;
  mo.out_dir = dir / "out";
  mo.overwrite = true;
  mo.progress = false;
  MergeReport rep;
  double tf = 1e300;
  for (int r = 0; r < a.repeat + 1; ++r) {  // the first run warms the page cache
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    const double t0 = now();
    rep = run_merge(recipe, mo, MPI_COMM_WORLD);
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    if (r > 0) tf = std::min(tf, now() - t0);
  }
  const double file = static_cast<double>(rep.bytes_read + rep.bytes_written) / tf / 1e9;
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  if (rank == 0 && a.dir.empty()) fs::remove_all(dir);

  if (rank == 0) {
    const int threads = omp_get_max_threads();
    std::printf("bench merge: %zu checkpoints x %zu MiB %s, %d thread(s), %d rank(s)\n", N, a.mib, a.dtype.c_str(),
                threads, world_size());
    std::printf("  stream triad          %8.2f GB/s\n", stream);
    std::printf("  fused kernel          %8.2f GB/s  (%.2f of triad)\n", kernel, kernel / stream);
    std::printf("  naive, N passes fp32  %8.2f GB/s  (%.2f of triad; %.2fx slower than fused)\n", naive,
                naive / stream, kernel / naive);
    std::printf("  file to file merge    %8.2f GB/s  (%.2f of triad; %.3f s for %.1f MB)\n", file, file / stream, tf,
                static_cast<double>(rep.bytes_read + rep.bytes_written) / 1e6);
    if (a.json)
      std::printf(
          "{\"stream_gbps\": %.3f, \"kernel_gbps\": %.3f, \"kernel_ratio\": %.3f, \"file_gbps\": %.3f, "
          "\"file_ratio\": %.3f, \"naive_gbps\": %.3f, \"naive_ratio\": %.3f, \"checkpoints\": %zu, \"mib\": %zu, "
          "\"dtype\": \"%s\", \"threads\": %d, \"ranks\": %d}\n",
          stream, kernel, kernel / stream, file, file / stream, naive, naive / stream, N, a.mib, a.dtype.c_str(),
          threads, world_size());
  }
  return 0;
}

BenchRegistration reg{{"merge", "Merge throughput: triad bandwidth, fused kernel, file-to-file, naive",
                       [](CLI::App& sub) {
                         auto a = std::make_shared<BenchArgs>();
                         sub.add_option("--checkpoints", a->checkpoints, "Number of inputs N")->default_val(4);
                         sub.add_option("--mib", a->mib, "Size of each input in MiB")->default_val(256);
                         sub.add_option("--dtype", a->dtype, "bf16, fp16 or fp32")->default_val("bf16");
                         sub.add_option("--repeat", a->repeat, "Timed repetitions (best is kept)")
                             ->default_val(5)
                             ->check(CLI::Range(1, 1000));
                         sub.add_option("--dir", a->dir, "Folder for the file benchmark (default: a temp folder)");
                         sub.add_flag("--json", a->json, "Print a JSON object as the last line");
                         return std::function<int()>([a] { return run_bench(*a); });
                       }}};

}  // namespace
}  // namespace kintsugi::cli
