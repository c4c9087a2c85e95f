// kintsugi_kernel_hashes: runs every fused merge kernel on fixed inputs
// (NaN, Inf, -0, subnormals and values near fp32's limit among them; a length
// that ends in every kernel's tail) for bf16, fp16 and fp32 inputs, and prints
// one FNV-1a hash of each output's bytes. The merged bytes must not depend on
// the host: test/e2e/aarch64_build.sh builds this for aarch64, runs it under
// qemu and requires the same lines as this build's, with each x86-64 copy of
// the kernels (KINTSUGI_CPU_KERNELS). Only the kernels' own file and the
// dtype helpers are linked there, so this calls nothing else.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <vector>

#include "kintsugi/kernels/merge_kernels.hpp"

using namespace kintsugi;

static uint64_t fnv(const void* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i)
    h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  return h;
}
static uint32_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}
// Values near 1 with small differences, and one in 97 special (NaN, Inf, 0, subnormal, huge).
static float value(size_t i, size_t j) {
  const uint32_t r = mix(i * 1000003ull + j);
  float f;
  switch (r % 97) {
    case 0: {
      uint32_t u = 0x7fc00001u;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case 1:
      return 1.0f / 0.0f;
    case 2:
      return -0.0f;
    case 3:
      return 1e-40f;
    case 4:
      return 3e38f;
    default:
      break;
  }
  return 0.5f + static_cast<float>(r % 100000) * 1e-5f * ((r >> 20) % 2 ? 1.0f : -1.0f);
}
static std::vector<unsigned char> encode(const std::vector<float>& v, DType d) {
  const size_t b = d == DType::F32 ? 4 : 2;
  std::vector<unsigned char> out(v.size() * b);
  fused_scale(v.data(), DType::F32, 1.0f, out.data(), d, v.size());
  return out;
}

int main() {
  const size_t N = 5, n = 4099;  // odd length: every tail path
  for (DType dt : {DType::BF16, DType::F16, DType::F32}) {
    std::vector<std::vector<unsigned char>> x;
    std::vector<float> f(n);
    for (size_t i = 0; i <= N; ++i) {
      for (size_t j = 0; j < n; ++j) f[j] = value(i, j);
      x.push_back(encode(f, dt));
    }
    std::vector<const void*> in;
    for (size_t i = 1; i <= N; ++i) in.push_back(x[i].data());
    const void* base = x[0].data();
    std::vector<unsigned char> out(n * 4);
    auto report = [&](const char* what, DType od) {
      std::printf("%s %s: %016llx\n",
                  dt == DType::BF16  ? "bf16"
                  : dt == DType::F16 ? "fp16"
                                     : "fp32",
                  what,
                  static_cast<unsigned long long>(fnv(out.data(), n * (od == DType::F32 ? 4 : 2))));
    };
    const std::vector<float> w = {0.3f, -0.7f, 1.1f, 0.25f, 0.6f};
    std::vector<const void*> all = {base};
    all.insert(all.end(), in.begin(), in.end());
    const std::vector<float> w6 = {0.1f, 0.3f, -0.7f, 1.1f, 0.25f, 0.6f};
    for (DType od : {DType::BF16, DType::F16, DType::F32}) {
      fused_weighted_sum(all, dt, w6, out.data(), od, n);
      report(od == DType::BF16  ? "weighted_sum->bf16"
             : od == DType::F16 ? "weighted_sum->fp16"
                                : "weighted_sum->fp32",
             od);
    }
    TaskMergeArgs a;
    a.inputs = in;
    a.base = base;
    a.in_dtype = dt;
    a.weights = w;
    a.out = out.data();
    a.out_dtype = dt;
    a.n = n;
    a.first_index = 12345;
    a.lambda = 0.9f;
    a.normalize = true;
    fused_task_merge(a);
    report("task_arithmetic", dt);
    const std::vector<uint32_t> thr = {0x3c000000u, 0x3b000000u, 0x3c800000u, 0u, 0x3d000000u};
    const std::vector<uint64_t> cut = {12345 + 100, 12345 + 4000, 0, 12345 + 2000, ~0ull};
    a.sparsify = Sparsify::Magnitude;
    a.thr_bits = thr;
    a.tie_cutoff = cut;
    a.sign_consensus = true;
    a.lambda = 1.0f;
    fused_task_merge(a);
    report("ties", dt);
    const std::vector<uint32_t> othr = {0x3e000000u, 0x3e000000u, 0x3e000000u, 0x3e000000u,
                                        0x3e000000u};
    const std::vector<uint64_t> ocut = {0, 0, 0, 0, 0};
    a.outlier_thr_bits = othr;
    a.outlier_tie_cutoff = ocut;
    fused_task_merge(a);
    report("breadcrumbs_ties", dt);
    a.outlier_thr_bits = {};
    a.outlier_tie_cutoff = {};
    const std::vector<float> dens = {0.3f, 0.5f, 0.9f, 0.1f, 1.0f};
    a.sparsify = Sparsify::Random;
    a.density = dens;
    a.rescale = true;
    a.seed_key = dare_seed_key(7, "model.layers.0.w");
    fused_task_merge(a);
    report("dare_ties", dt);
    a.sign_consensus = false;
    fused_task_merge(a);
    report("dare_linear", dt);
    std::vector<uint32_t> ranks(N * n);
    for (size_t k = 0; k < ranks.size(); ++k) ranks[k] = mix(k) % 64;
    const std::vector<float> low = {0.2f, 0.4f, 0.1f, 0.5f, 0.3f},
                             eps = {0.1f, 0.05f, 0.1f, 0.2f, 0.0f},
                             scl = {1.5f, 2.0f, 0.75f, 1.0f, 3.0f};
    a.sparsify = Sparsify::Ranked;
    a.ranks = ranks;
    a.row_len = 64;
    a.ranked_low = low;
    a.ranked_eps = eps;
    a.ranked_scale = scl;
    a.sign_consensus = true;
    fused_task_merge(a);
    report("della", dt);
    SceMergeArgs s;
    s.inputs = in;
    s.base = base;
    s.in_dtype = dt;
    s.weights = w;
    s.select = true;
    s.thr_bits = 0x3a000000u;
    s.tie_cutoff = 2000;
    s.out = out.data();
    s.out_dtype = dt;
    s.n = n;
    fused_sce_merge(s);
    report("sce", dt);
    RamMergeArgs r;
    r.inputs = in;
    r.base = base;
    r.in_dtype = dt;
    r.epsilon = 1e-3f;
    r.out = out.data();
    r.out_dtype = dt;
    r.n = n;
    fused_ram_merge(r);
    report("ram", dt);
    const std::vector<float> lam = {0.5f, 1.5f, 1.0f, 2.0f, 0.25f};
    r.lambda = lam;
    fused_ram_merge(r);
    report("ramplus_tl", dt);
    fused_nearswap(base, in[0], dt, 0.01f, out.data(), dt, n);
    report("nearswap", dt);
    std::vector<float> vw(N * 40);
    for (size_t k = 0; k < vw.size(); ++k)
      vw[k] = static_cast<float>(mix(k + 99) % 1000) * 1e-3f - 0.3f;
    VectorMergeArgs v;
    v.inputs = in;
    v.base = base;
    v.in_dtype = dt;
    v.weights = vw;
    v.segment = 103;
    v.out = out.data();
    v.out_dtype = dt;
    v.n = n;
    fused_vector_merge(v);
    report("vector_rows", dt);
    v.by_column = false;
    v.base = nullptr;
    fused_vector_merge(v);
    report("vector_rows_nobase", dt);
    std::vector<float> kl(70);
    for (size_t k = 0; k < kl.size(); ++k) kl[k] = static_cast<float>(k % 7) * 0.01f;
    FusionMergeArgs fu;
    fu.base = base;
    fu.model = in[1];
    fu.in_dtype = dt;
    fu.kl_rows = kl;
    fu.row_len = 64;
    fu.threshold = 1e-4f;
    fu.out = out.data();
    fu.out_dtype = dt;
    fu.n = n;
    fused_fusion_merge(fu);
    report("arcee_fusion", dt);
    const std::vector<uint32_t> kn = {3, 5, 2, 7, 1}, bm = {8, 8, 4, 8, 8};
    CabsMergeArgs c;
    c.inputs = in;
    c.base = base;
    c.in_dtype = dt;
    c.weights = w;
    c.keep_n = kn;
    c.block_m = bm;
    c.out = out.data();
    c.out_dtype = dt;
    c.n = n;
    fused_cabs_merge(c);
    report("cabs", dt);
  }
  std::vector<float> u(1001);
  dare_uniforms(dare_seed_key(3, "t"), 2, (1ull << 32) - 17, u.size(), u.data());
  std::printf("dare_uniforms: %016llx\n",
              static_cast<unsigned long long>(fnv(u.data(), u.size() * 4)));
}
