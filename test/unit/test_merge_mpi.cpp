// Sharding invariance in one process group: each method's output over the
// flat plan on P ranks (gathered) is byte-identical to the one-rank result.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <vector>

#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "kintsugi/merge/engine.hpp"
#include "kintsugi/merge/tensor_merge.hpp"
#include "kintsugi/pool/flat_plan.hpp"
#include "test_support.hpp"

using namespace kintsugi;

namespace {

std::vector<uint16_t> make_bf16(size_t n, unsigned seed, float scale, int levels) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> q(-levels, levels);  // coarse values: many ties
  std::vector<uint16_t> v(n);
  for (auto& x : v) {
    const float f = scale * static_cast<float>(q(rng));
    uint32_t u;
    std::memcpy(&u, &f, 4);
    x = static_cast<uint16_t>(u >> 16);  // exact: few significant bits
  }
  return v;
}

std::vector<uint16_t> run(const TensorSources& s, const TensorMethod& m, ElementRange range,
                          uint64_t chunk, MPI_Comm comm) {
  std::vector<uint16_t> out(s.numel, 0);
  merge_tensor(s, m, range, DType::BF16, chunk, comm,
               [&](ElementRange c, std::span<const std::byte> b) {
                 std::memcpy(out.data() + c.begin, b.data(), b.size());
               });
  return out;
}

// `n` values of the base and three models near it (bf16).
std::vector<std::vector<uint16_t>> make_pool(size_t n) {
  std::vector<std::vector<uint16_t>> pool{make_bf16(n, 1, 0.5f, 8)};
  pool.reserve(4);  // `base` stays valid
  const auto& base = pool[0];
  for (unsigned i = 0; i < 3; ++i) {
    auto d = make_bf16(n, 10 + i, 0.125f, 5);
    for (size_t j = 0; j < n; ++j) {
      uint32_t a = static_cast<uint32_t>(base[j]) << 16, b = static_cast<uint32_t>(d[j]) << 16;
      float fa, fb;
      std::memcpy(&fa, &a, 4);
      std::memcpy(&fb, &b, 4);
      const float f = fa + fb;
      uint32_t u;
      std::memcpy(&u, &f, 4);
      d[j] = static_cast<uint16_t>(u >> 16);
    }
    pool.push_back(std::move(d));
  }
  return pool;
}

// The one-rank bytes of `m` on s over [0, numel), against this world's ranks
// each merging their flat share (gathered).
void require_rank_invariant(const TensorSources& s, const TensorMethod& m) {
  const int rank = world_rank(), size = world_size();
  const size_t n = s.numel;
  // The reference: this rank alone, whole tensor, one odd chunk size.
  const auto whole = run(s, m, {0, n}, 7777, MPI_COMM_SELF);
  // Distributed: each rank its share, another chunk size; gather the shares.
  const ElementRange mine = flat_share(n, rank, size);
  auto part = run(s, m, mine, 4096, MPI_COMM_WORLD);
  std::vector<uint16_t> all(n);
  std::vector<int> counts(static_cast<size_t>(size)), displs(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) {
    const auto rr = flat_share(n, r, size);
    counts[static_cast<size_t>(r)] = static_cast<int>(rr.size());
    displs[static_cast<size_t>(r)] = static_cast<int>(rr.begin);
  }
  MPI_Allgatherv(part.data() + mine.begin, static_cast<int>(mine.size()), MPI_UINT16_T, all.data(),
                 counts.data(), displs.data(), MPI_UINT16_T, MPI_COMM_WORLD);
  REQUIRE(all == whole);
}

}  // namespace

TEST_CASE("every method is byte-identical for any number of ranks", "[mpi][merge]") {
  const int size = world_size();
  const size_t n = 100003;
  const auto pool = make_pool(n);
  const auto& base = pool[0];
  const std::vector<std::vector<uint16_t>> models(pool.begin() + 1, pool.end());
  TensorSources s;
  s.name = "model.layers.3.self_attn.q_proj.weight";
  s.numel = n;
  s.dtype = DType::BF16;
  s.base = base.data();
  for (auto& m : models) s.models.push_back(m.data());

  std::vector<TensorMethod> methods(6);
  methods[0].method = MergeMethod::Linear;
  methods[0].weights = {0.2f, 0.3f, 0.5f};
  methods[1].method = MergeMethod::TaskArithmetic;
  methods[1].weights = {1.0f, 0.5f, 0.7f};
  methods[1].lambda = 0.9;
  methods[2].method = MergeMethod::Ties;
  methods[2].weights = {1.0f, 0.5f, 0.7f};
  methods[2].density = {0.3, 0.55, 0.71};
  methods[2].normalize = true;
  methods[3].method = MergeMethod::DareTies;
  methods[3].weights = {1.0f, 0.5f, 0.7f};
  methods[3].density = {0.3, 0.5, 0.9};
  methods[3].seed = 1234;
  methods[3].rescale = true;  // mergekit's default for dare_*: L1 sums across ranks
  methods[4].method = MergeMethod::ModelStock;
  methods[5].method = MergeMethod::Slerp;
  methods[5].t = 0.35;
  // breadcrumbs: many equal magnitudes, so the tie cutoffs of both selections
  // (the band and the outliers) fall inside ranks' ranges.
  methods.resize(9);
  methods[6].method = MergeMethod::Breadcrumbs;
  methods[6].weights = {1.0f, 0.5f, 0.7f};
  methods[6].density = {0.9, 0.5, 1.0};
  methods[6].gamma = {0.01, 0.7, 0.1};
  methods[7].method = MergeMethod::BreadcrumbsTies;
  methods[7].weights = {1.0f, -0.5f, 0.7f};
  methods[7].density = {0.8, 0.33, 0.6};
  methods[7].gamma = {0.05, 0.0, 0.2};
  methods[7].normalize = true;
  methods[8].method = MergeMethod::Nearswap;
  methods[8].t = 0.01;
  methods.resize(15);
  methods[9].method = MergeMethod::Passthrough;  // a copy
  methods[10].method = MergeMethod::Passthrough;
  methods[10].weights = {0.3f};  // scaled
  // della: ranks within rows of 800 (rows cut by rank boundaries, which fall
  // on multiples of 64, and by chunks), exact L1 sums for the rescale.
  methods[11].method = MergeMethod::Della;
  methods[11].weights = {1.0f, 0.5f, 0.7f};
  methods[11].density = {0.3, 0.5, 1.0};
  methods[11].epsilon = {0.2, 0.1, 0.15};
  methods[11].normalize = true;
  methods[11].seed = 99;
  methods[11].rescale = true;
  methods[12].method = MergeMethod::DellaLinear;
  methods[12].weights = {1.0f, -0.5f, 0.7f};
  methods[12].density = {0.6, 0.0, 0.45};
  methods[12].epsilon = {0.3, 0.15, 0.0};
  methods[12].lambda = 1.3;
  methods[12].seed = 5;
  methods[12].rescale = true;
  // sce: variance top-k with ties inside ranks' ranges, exact mean squares.
  methods[13].method = MergeMethod::Sce;
  methods[13].select_topk = 0.3;
  methods[14].method = MergeMethod::Sce;
  // rescale on the magnitude selections: the mask's L1 sums across ranks
  // (breadcrumbs' outliers included; one model at density 1, not rescaled).
  for (size_t k : {2, 6}) {
    TensorMethod t = methods[k];
    t.rescale = true;
    methods.push_back(t);
  }
  TensorMethod dare = methods[3];
  dare.method = MergeMethod::DareLinear;
  dare.density = {0.0, 0.25, 1.0};
  methods.push_back(dare);
  for (const auto& m : methods) {
    INFO("method " << static_cast<int>(m.method) << " on " << size << " ranks");
    TensorSources src = s;
    if (m.method == MergeMethod::Della || m.method == MergeMethod::DellaLinear) {
      src.numel = n - 3;  // 125 rows of 800
      src.shape = {125, 800};
    }
    if (m.method == MergeMethod::Slerp || m.method == MergeMethod::Nearswap ||
        m.method == MergeMethod::Passthrough)
      src.models.resize(1);
    require_rank_invariant(src, m);
  }
}

TEST_CASE("nuslerp, multislerp and karcher are byte-identical for any number of ranks",
          "[mpi][merge]") {
  // [300, 333]: rows of 333 and columns of 300 cross the ranks' ranges
  // (multiples of 64 elements); [33300, 3]: many short rows per chunk.
  const size_t n = 99900;
  const auto pool = make_pool(n);
  TensorSources s;
  s.name = "model.layers.3.mlp.down_proj.weight";
  s.numel = n;
  s.dtype = DType::BF16;
  for (size_t i = 1; i < pool.size(); ++i) s.models.push_back(pool[i].data());
  for (int with_base = 0; with_base < 2; ++with_base) {
    s.base = with_base ? pool[0].data() : nullptr;
    TensorSources two = s;
    two.models.resize(2);
    for (const std::vector<int64_t>& shape :
         {std::vector<int64_t>{300, 333}, std::vector<int64_t>{33300, 3}}) {
      two.shape = shape;
      for (int mode = 0; mode < 3; ++mode) {
        TensorMethod m;
        m.method = MergeMethod::Nuslerp;
        m.t = 0.4;
        m.flatten = mode == 0;
        m.row_wise = mode == 2;
        INFO("nuslerp base " << with_base << " shape " << shape[0] << " mode " << mode);
        require_rank_invariant(two, m);
      }
    }
    TensorMethod ms;
    ms.method = MergeMethod::Multislerp;
    ms.sphere_weights = {0.2, 0.5, 0.3};
    INFO("multislerp base " << with_base);
    require_rank_invariant(s, ms);
    TensorMethod ka;
    ka.method = MergeMethod::Karcher;
    ka.max_iter = 50;
    INFO("karcher base " << with_base);
    require_rank_invariant(s, ka);
  }
}

TEST_CASE("ram, ramplus_tl and arcee_fusion are byte-identical for any number of ranks",
          "[mpi][merge]") {
  const size_t n = 100003;
  const auto pool = make_pool(n);
  TensorSources s;
  s.name = "model.layers.3.self_attn.q_proj.weight";
  s.numel = n;
  s.dtype = DType::BF16;
  s.base = pool[0].data();
  for (size_t i = 1; i < pool.size(); ++i) s.models.push_back(pool[i].data());
  // ram / ramplus_tl: an epsilon that some deltas fall under; ramplus_tl's
  // counts summed across ranks.
  for (auto method : {MergeMethod::Ram, MergeMethod::RamplusTl}) {
    for (double eps : {1e-5, 0.03}) {
      TensorMethod m;
      m.method = method;
      m.ram_epsilon = eps;
      m.ram_r = 0.5;
      m.ram_alpha = 0.9;
      INFO("method " << static_cast<int>(method) << " epsilon " << eps);
      require_rank_invariant(s, m);
    }
  }
  // arcee_fusion: rows of 800 (few rows: the divergences kept for the range),
  // of 2 (more rows than a chunk: recomputed per pass), one row (1-D).
  TensorSources one = s;
  one.models.resize(1);
  one.numel = n - 3;
  for (const std::vector<int64_t>& shape :
       {std::vector<int64_t>{125, 800}, std::vector<int64_t>{50000, 2}, std::vector<int64_t>{}}) {
    one.shape = shape;
    if (shape.empty()) one.numel = 5000;
    TensorMethod m;
    m.method = MergeMethod::ArceeFusion;
    INFO("arcee_fusion rows " << (shape.empty() ? 0 : shape.back()));
    require_rank_invariant(one, m);
  }
}

TEST_CASE("cabs and lrp are byte-identical for any number of ranks", "[mpi][merge]") {
  const size_t n = 100003;
  const auto pool = make_pool(n);
  TensorSources s;
  s.name = "model.layers.3.mlp.up_proj.weight";
  s.numel = n;
  s.dtype = DType::BF16;
  s.base = pool[0].data();
  for (size_t i = 1; i < pool.size(); ++i) s.models.push_back(pool[i].data());
  const size_t N = s.models.size();
  // cabs: superblocks of lcm(3, 8) = 24 and of 1000 that straddle the ranks' ranges.
  for (uint32_t big : {8u, 1000u}) {
    TensorMethod m;
    m.method = MergeMethod::Cabs;
    for (size_t i = 0; i < N; ++i) {
      m.order.push_back(N - 1 - i);
      m.keep_n.push_back(i % 2 ? 1 : 2);
      m.block_m.push_back(i % 2 ? 3 : big);
      m.weights.push_back(0.5f + 0.25f * static_cast<float>(i));
    }
    INFO("cabs block " << big);
    require_rank_invariant(s, m);
  }
  // lrp: the top-k threshold found across ranks.
  TensorMethod m;
  m.method = MergeMethod::Lrp;
  for (size_t i = 0; i < N; ++i) m.weights.push_back(1.0f / static_cast<float>(N));
  m.density.assign(N, 0.3);
  m.normalize = false;
  m.rescale = false;
  require_rank_invariant(s, m);
}

TEST_CASE("encoder_decoder_weighted and core_space recipes give one rank's bytes on every rank",
          "[mpi][merge]") {
  // Through the file merge engine (the plan: per-tensor weight sets, the base
  // added as an input, shards): one rank alone (MPI_COMM_SELF) against all of
  // this world's ranks, output folders compared file by file.
  const int rank = world_rank();
  std::unique_ptr<test::TempDir> tmp;
  if (rank == 0) tmp = std::make_unique<test::TempDir>();
  const std::filesystem::path dir =
      broadcast_string(rank == 0 ? tmp->path().string() : std::string(), MPI_COMM_WORLD);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"model.encoder.layers.0.fc1.weight", {37, 11}},
      {"model.decoder.layers.0.self_attn.q_proj.weight", {64, 33}},
      {"model.decoder.layers.0.encoder_attn.k_proj.weight", {50, 7}},
      {"model.decoder.layer_norm.weight", {130}}};
  if (rank == 0) {
    const auto pool = make_pool(64 * 33 + 100);  // each model from its own offset
    for (size_t m = 0; m < pool.size(); ++m) {
      std::vector<TensorData> ts;
      for (const auto& [name, shape] : shapes) {
        TensorData t;
        t.spec = {name, DType::BF16, shape};
        const size_t n = static_cast<size_t>(shape[0]) * (shape.size() > 1 ? shape[1] : 1);
        t.bytes.resize(2 * n);
        std::memcpy(t.bytes.data(), pool[m].data() + (m * 7) % 100, 2 * n);
        ts.push_back(std::move(t));
      }
      write_safetensors(dir / ("m" + std::to_string(m) + ".safetensors"), ts);
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const std::vector<std::pair<std::string, std::string>> recipes = {
      {"edw",
       "merge_method: encoder_decoder_weighted\nmodels:\n"
       "  - model: m1.safetensors\n    parameters: {encoder_weight: 0.2, decoder_weight: 0.7}\n"
       "  - model: m2.safetensors\n    parameters: {encoder_weight: 0.5, decoder_weight: 0.1, "
       "cross_weight: 0.9}\n"
       "  - model: m3.safetensors\n    parameters: {encoder_weight: 0.3, decoder_weight: 0.2}\n"},
      {"core",
       "merge_method: core_space\nbase_model: m0.safetensors\nmodels:\n"
       "  - model: m1.safetensors\n  - model: m2.safetensors\n  - model: m1.safetensors\n"}};
  for (const auto& [name, text] : recipes) {
    INFO(name << " on " << world_size() << " ranks");
    const Recipe r = parse_recipe(text, dir / (name + ".yaml"));
    MergeOptions o;
    o.progress = false;
    o.chunk_elems = 300;
    o.max_shard_bytes = 3000;
    if (rank == 0) {
      o.out_dir = dir / (name + "-1");
      run_merge(r, o, MPI_COMM_SELF);
    }
    o.out_dir = dir / (name + "-p");
    run_merge(r, o, MPI_COMM_WORLD);
    if (rank == 0) {
      size_t files = 0;
      for (const auto& e : std::filesystem::directory_iterator(dir / (name + "-1"))) {
        REQUIRE(test::slurp(e.path()) == test::slurp(dir / (name + "-p") / e.path().filename()));
        ++files;
      }
      CHECK(files >= 4);  // shards, their index and the recipe
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST_CASE("flat_share covers a tensor in order on granule boundaries", "[merge]") {
  for (uint64_t n : {0ull, 1ull, 63ull, 64ull, 1000ull, 100003ull}) {
    for (int p = 1; p <= 5; ++p) {
      uint64_t next = 0;
      for (int r = 0; r < p; ++r) {
        const auto s = flat_share(n, r, p);
        REQUIRE(s.begin == next);
        REQUIRE(s.end >= s.begin);
        if (s.end != n) REQUIRE(s.end % 64 == 0);
        next = s.end;
      }
      REQUIRE(next == n);
    }
  }
  const auto c = chunks_of({10, 35}, 10);
  REQUIRE(c.size() == 3);
  CHECK(c[0].begin == 10);
  CHECK(c[2].end == 35);
}
