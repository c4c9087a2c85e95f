// Backend agreement (after llama.cpp's test-backend-ops): every kernel
// operation on the CUDA backend must produce the CPU backend's bytes exactly.
// Skips, saying so, where the build has no CUDA or the machine no GPU.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <vector>

#include "kintsugi/kernels/merge_kernels.hpp"
#include "kintsugi/merge/tensor_merge.hpp"
#if KINTSUGI_HAVE_CUDA
#include "kintsugi/kernels/merge_kernels_cuda.hpp"
#endif

using namespace kintsugi;

TEST_CASE("CUDA kernels agree bitwise with the CPU kernels", "[merge][backends]") {
#if !KINTSUGI_HAVE_CUDA
  WARN("skipped: this build has no CUDA kernels (nvcc not found at configure time)");
#else
  if (cuda::device_count() == 0) {
    WARN("skipped: no GPU on this machine (the CUDA kernels are built but cannot run)");
    return;
  }
  const size_t n = (size_t{1} << 20) + 12345, N = 4;
  const DType dts[] = {DType::BF16, DType::F16, DType::F32};
  auto esize = [](DType d) { return d == DType::F32 ? size_t{4} : size_t{2}; };
  std::mt19937 rng(17);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> base_f(n);
  std::vector<std::vector<float> > in_f(N, std::vector<float>(n));
  for (auto& x : base_f) x = nd(rng);
  for (auto& v : in_f)
    for (size_t j = 0; j < n; ++j) v[j] = base_f[j] + 0.1f * nd(rng);
  const std::vector<float> w = {0.4f, -0.2f, 0.5f, 0.3f};
  for (DType in : dts) {
    // Host inputs in `in`, and their device copies.
    std::vector<std::vector<std::byte> > h(N + 1, std::vector<std::byte>(n * esize(in)));
    convert_from_f32(in, base_f.data(), h[N].data(), n);
    for (size_t i = 0; i < N; ++i) convert_from_f32(in, in_f[i].data(), h[i].data(), n);
    std::vector<void*> d(N + 1);
    for (size_t i = 0; i <= N; ++i) {
      d[i] = cuda::alloc(h[i].size());
      cuda::copy_to_device(d[i], h[i].data(), h[i].size());
    }
    std::vector<const void*> hp(h.size()), dp(d.begin(), d.end());
    for (size_t i = 0; i <= N; ++i) hp[i] = h[i].data();
    for (DType out : dts) {
      INFO("in " << static_cast<int>(in) << " out " << static_cast<int>(out));
      const size_t ob = n * esize(out);
      std::vector<std::byte> cpu(ob), gpu(ob);
      void* dout = cuda::alloc(ob);
      fused_weighted_sum(std::span(hp.data(), N), in, w, cpu.data(), out, n);
      cuda::fused_weighted_sum(std::span(dp.data(), N), in, w, dout, out, n);
      cuda::copy_to_host(gpu.data(), dout, ob);
      CHECK(cpu == gpu);
      // Task-vector family: every sparsification and consensus combination.
      TensorSources src;
      src.name = "t";
      src.numel = n;
      src.dtype = in;
      src.base = hp[N];
      src.models.assign(hp.begin(), hp.begin() + N);
      const std::vector<double> dens = {0.2, 0.5, 0.8, 1.0};
      const auto sel = ties_select(src, dens, {0, n}, 1 << 16, MPI_COMM_SELF);
      const std::vector<float> densf = {0.2f, 0.5f, 0.8f, 1.0f};
      for (int kind = 0; kind < 4; ++kind) {
        TaskMergeArgs a;
        a.in_dtype = in;
        a.out_dtype = out;
        a.weights = w;
        a.lambda = 0.75f;
        a.normalize = kind != 0;
        a.sign_consensus = kind == 1 || kind == 3;
        a.sparsify = kind == 1   ? Sparsify::Magnitude
                     : kind >= 2 ? Sparsify::Random
                                 : Sparsify::None;
        a.thr_bits = sel.thr_bits;
        a.tie_cutoff = sel.tie_cutoff;
        a.density = densf;
        a.seed_key = dare_seed_key(99, "t");
        a.first_index = 1000;
        a.n = n;
        a.inputs = std::span(hp.data(), N);
        a.base = hp[N];
        a.out = cpu.data();
        fused_task_merge(a);
        a.inputs = std::span(dp.data(), N);
        a.base = dp[N];
        a.out = dout;
        cuda::fused_task_merge(a);
        cuda::copy_to_host(gpu.data(), dout, ob);
        INFO("task kind " << kind);
        CHECK(cpu == gpu);
      }
      // breadcrumbs: the kept band is a top set minus an outlier top set.
      std::vector<uint64_t> keep(N), top(N);
      for (size_t i = 0; i < N; ++i) {
        const OutlierCounts c = breadcrumbs_counts(n, dens[i], 0.01 * static_cast<double>(i));
        keep[i] = n - c.n_bot;
        top[i] = c.n_top;
      }
      const auto band = topk_select(src, keep, {0, n}, 1 << 16, MPI_COMM_SELF);
      const auto outl = topk_select(src, top, {0, n}, 1 << 16, MPI_COMM_SELF);
      for (int consensus = 0; consensus < 2; ++consensus) {
        TaskMergeArgs a;
        a.in_dtype = in;
        a.out_dtype = out;
        a.weights = w;
        a.lambda = 0.75f;
        a.sign_consensus = consensus == 1;
        a.sparsify = Sparsify::Magnitude;
        a.thr_bits = band.thr_bits;
        a.tie_cutoff = band.tie_cutoff;
        a.outlier_thr_bits = outl.thr_bits;
        a.outlier_tie_cutoff = outl.tie_cutoff;
        a.first_index = 0;
        a.n = n;
        a.inputs = std::span(hp.data(), N);
        a.base = hp[N];
        a.out = cpu.data();
        fused_task_merge(a);
        a.inputs = std::span(dp.data(), N);
        a.base = dp[N];
        a.out = dout;
        cuda::fused_task_merge(a);
        cuda::copy_to_host(gpu.data(), dout, ob);
        INFO("breadcrumbs consensus " << consensus);
        CHECK(cpu == gpu);
      }
      // della: ranks within rows of 1000 (on the device too), rescaled survivors.
      {
        std::vector<uint32_t> ranks(N * n);
        for (size_t i = 0; i < N; ++i)
          della_ranks(src, i, {0, n}, n, ranks.data() + i * n);  // one row
        void* dranks = cuda::alloc(ranks.size() * 4);
        cuda::copy_to_device(dranks, ranks.data(), ranks.size() * 4);
        const std::vector<float> low = {0.1f, 0.35f, 2.0f, 0.0f}, eps = {0.05f, 0.15f, 0.0f, 0.0f},
                                 scale = {4.0f, 1.9f, 1.0f, 1.0f};
        for (int consensus = 0; consensus < 2; ++consensus) {
          TaskMergeArgs a;
          a.in_dtype = in;
          a.out_dtype = out;
          a.weights = w;
          a.lambda = 0.75f;
          a.normalize = consensus == 1;
          a.sign_consensus = consensus == 1;
          a.sparsify = Sparsify::Ranked;
          a.seed_key = dare_seed_key(99, "t");
          a.row_len = n;
          a.ranked_low = low;
          a.ranked_eps = eps;
          a.ranked_scale = scale;
          a.first_index = 0;
          a.n = n;
          a.ranks = ranks;
          a.inputs = std::span(hp.data(), N);
          a.base = hp[N];
          a.out = cpu.data();
          fused_task_merge(a);
          a.ranks = std::span(static_cast<const uint32_t*>(dranks), ranks.size());
          a.inputs = std::span(dp.data(), N);
          a.base = dp[N];
          a.out = dout;
          cuda::fused_task_merge(a);
          cuda::copy_to_host(gpu.data(), dout, ob);
          INFO("della consensus " << consensus);
          CHECK(cpu == gpu);
        }
        cuda::free(dranks);
      }
      // sce, with and without the variance selection.
      for (int select = 0; select < 2; ++select) {
        SceMergeArgs a;
        a.in_dtype = in;
        a.out_dtype = out;
        a.weights = std::span(w.data(), N);
        a.select = select == 1;
        a.thr_bits = 0x3b000000u;
        a.tie_cutoff = n / 2 + 1000;
        a.first_index = 1000;
        a.n = n;
        a.inputs = std::span(hp.data(), N);
        a.base = hp[N];
        a.out = cpu.data();
        fused_sce_merge(a);
        a.inputs = std::span(dp.data(), N);
        a.base = dp[N];
        a.out = dout;
        cuda::fused_sce_merge(a);
        cuda::copy_to_host(gpu.data(), dout, ob);
        INFO("sce select " << select);
        CHECK(cpu == gpu);
      }
      // ram and ramplus_tl, two epsilons.
      for (int variant = 0; variant < 4; ++variant) {
        const std::vector<float> lam = {1.02f, 1.0f, 1.2f, 1.1f};
        RamMergeArgs a;
        a.in_dtype = in;
        a.out_dtype = out;
        a.epsilon = variant % 2 ? 0.03f : 1e-5f;
        if (variant >= 2) a.lambda = std::span(lam.data(), N);
        a.n = n;
        a.inputs = std::span(hp.data(), N);
        a.base = hp[N];
        a.out = cpu.data();
        fused_ram_merge(a);
        a.inputs = std::span(dp.data(), N);
        a.base = dp[N];
        a.out = dout;
        cuda::fused_ram_merge(a);
        cuda::copy_to_host(gpu.data(), dout, ob);
        INFO("ram variant " << variant);
        CHECK(cpu == gpu);
      }
      // arcee_fusion: rows of 1000 from a chunk starting at 777.
      for (float thr : {0.0f, 1e-4f}) {
        const uint64_t L = 1000, first = 777, r0 = first / L;
        std::vector<float> kl((first + n - 1) / L - r0 + 1);
        for (size_t k = 0; k < kl.size(); ++k) kl[k] = 1e-3f * static_cast<float>(k % 11);
        FusionMergeArgs a;
        a.in_dtype = in;
        a.out_dtype = out;
        a.kl_rows = kl;
        a.row_len = L;
        a.first_row = r0;
        a.first_index = first;
        a.threshold = thr;
        a.n = n;
        a.base = hp[N];
        a.model = hp[0];
        a.out = cpu.data();
        fused_fusion_merge(a);
        a.base = dp[N];
        a.model = dp[0];
        a.out = dout;
        cuda::fused_fusion_merge(a);
        cuda::copy_to_host(gpu.data(), dout, ob);
        INFO("fusion threshold " << thr);
        CHECK(cpu == gpu);
      }
      // cabs: n:m of 2:4, 3:8 and 1:3 (a short last block), then 0:5 and 5:5.
      for (int variant = 0; variant < 2; ++variant) {
        const std::vector<float> cw = {0.6f, -0.4f, 1.5f, 0.25f};
        std::vector<uint32_t> cn = {2, 3, 1, 2}, cm = {4, 8, 3, 4};
        if (variant == 1) cn = {0, 5, 5, 5}, cm = {5, 5, 5, 5};
        CabsMergeArgs a;
        a.in_dtype = in;
        a.out_dtype = out;
        a.weights = std::span(cw.data(), N);
        a.keep_n = std::span(cn.data(), N);
        a.block_m = std::span(cm.data(), N);
        a.n = n;
        a.inputs = std::span(hp.data(), N);
        a.base = hp[N];
        a.out = cpu.data();
        fused_cabs_merge(a);
        a.inputs = std::span(dp.data(), N);
        a.base = dp[N];
        a.out = dout;
        cuda::fused_cabs_merge(a);
        cuda::copy_to_host(gpu.data(), dout, ob);
        INFO("cabs variant " << variant);
        CHECK(cpu == gpu);
      }
      // Per-row and per-column weights (nuslerp), with and without a base.
      for (int variant = 0; variant < 4; ++variant) {
        const bool by_column = variant >= 2;
        const uint64_t seg = by_column ? 4096 : 1000, first = 777;
        const uint64_t v0 = by_column ? 0 : first / seg;
        const uint64_t nvec = by_column ? seg : (first + n - 1) / seg - v0 + 1;
        std::vector<float> vw(nvec * N);
        for (size_t k = 0; k < vw.size(); ++k) vw[k] = w[k % N] * static_cast<float>(1 + k % 7);
        VectorMergeArgs a;
        a.in_dtype = in;
        a.out_dtype = out;
        a.weights = vw;
        a.segment = seg;
        a.by_column = by_column;
        a.first_vector = v0;
        a.first_index = first;
        a.n = n;
        a.inputs = std::span(hp.data(), N);
        a.base = variant % 2 ? hp[N] : nullptr;
        a.out = cpu.data();
        fused_vector_merge(a);
        a.inputs = std::span(dp.data(), N);
        a.base = variant % 2 ? dp[N] : nullptr;
        a.out = dout;
        cuda::fused_vector_merge(a);
        cuda::copy_to_host(gpu.data(), dout, ob);
        INFO("vector merge variant " << variant);
        CHECK(cpu == gpu);
      }
      // nearswap, including the elements where the inputs are equal (w = t / 0).
      for (float t : {1e-3f, 0.02f, 1.0f}) {
        fused_nearswap(hp[N], hp[0], in, t, cpu.data(), out, n);
        cuda::fused_nearswap(dp[N], dp[0], in, t, dout, out, n);
        cuda::copy_to_host(gpu.data(), dout, ob);
        INFO("nearswap t " << t);
        CHECK(cpu == gpu);
        fused_nearswap(hp[N], hp[N], in, t, cpu.data(), out, n);
        cuda::fused_nearswap(dp[N], dp[N], in, t, dout, out, n);
        cuda::copy_to_host(gpu.data(), dout, ob);
        CHECK(cpu == gpu);
      }
      // passthrough's scale, and the plain dtype conversion (scale 1).
      for (float s : {1.0f, 0.3f, -2.5f}) {
        fused_scale(hp[0], in, s, cpu.data(), out, n);
        cuda::fused_scale(dp[0], in, s, dout, out, n);
        cuda::copy_to_host(gpu.data(), dout, ob);
        INFO("scale " << s);
        CHECK(cpu == gpu);
      }
      cuda::free(dout);
    }
    for (void* p : d) cuda::free(p);
  }
#endif
}
