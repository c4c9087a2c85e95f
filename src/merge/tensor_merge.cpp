// Per-tensor merge methods on top of the fused kernels, plus the collectives
// for whole-tensor statistics. Every reduction is exact (integer histograms,
// fixed-point dot products), so the statistics, and hence the output bytes,
// do not depend on how the tensor is split among ranks.
#include "kintsugi/merge/tensor_merge.hpp"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <optional>

#include "kintsugi/common/error.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/kernels/element_ops.hpp"
#include "kintsugi/kernels/merge_kernels.hpp"

namespace kintsugi {
namespace {

__extension__ typedef __int128 i128;

// The radix select's digits: 16 bits (two passes of 65536 bins) for large
// tensors; 8 bits (four passes of 256 bins) below kWideDigitMin elements,
// where zeroing and summing N x 65536 counters across the ranks would cost
// far more than reading the keys twice more (norms and biases: most of a
// model's tensors, a few thousand elements each).
constexpr uint64_t kWideDigitMin = uint64_t{1} << 20;
// Keys (elements x sets) from which key_histogram counts on all threads.
constexpr uint64_t kParallelKeysMin = uint64_t{1} << 20;

// Element size of the kernels' dtypes (BF16, F16, F32; others never get here).
size_t elem_size(DType d) {
  return d == DType::F32 ? 4 : 2;
}

// Elements [first, first + n) of a tensor at p, decoded to fp32.
void decode(DType d, const void* p, uint64_t first, uint64_t n, float* out) {
  const auto* bytes = static_cast<const char*>(p);
  if (d == DType::F32) {
    std::memcpy(out, bytes + 4 * first, 4 * n);
    return;
  }
  for (uint64_t k = 0; k < n; ++k) {
    uint16_t h;
    std::memcpy(&h, bytes + 2 * (first + k), 2);
    out[k] = d == DType::BF16 ? ops::bf16_to_f32(h) : ops::f16_to_f32(h);
  }
}

// delta_i = x_i - base, exactly as the kernels compute it.
void decode_delta(const TensorSources& s, size_t i, ElementRange c, const float* base, float* out) {
  decode(s.dtype, s.models[i], c.begin, c.size(), out);
  for (uint64_t k = 0; k < c.size(); ++k) out[k] = ops::sub(out[k], base[k]);
}

inline uint32_t key_of(float d) {
  return ops::f32_bits(d) & 0x7fffffffu;
}

// The fixed-point scale 2^E of a Gram matrix whose vectors' largest
// magnitude is gmax > 0 (tensor_merge.hpp): gmax < 2^e, E = 62 - 2e, so
// |x_a x_b| 2^E < 2^62 and a 128-bit sum of 2^64 such terms cannot overflow.
double gram_scale(float gmax) {
  int e = 0;
  std::frexp(static_cast<double>(gmax), &e);
  return std::ldexp(1.0, 62 - 2 * e);
}

// sum_k trunc(x[k] y[k] scale): each product is exact in double (two 24-bit
// significands), the scaling by a power of two too.
inline i128 fixed_dot(const float* x, const float* y, uint64_t n, double scale) {
  i128 s = 0;
  for (uint64_t k = 0; k < n; ++k)
    s += static_cast<int64_t>(static_cast<double>(x[k]) * static_cast<double>(y[k]) * scale);
  return s;
}

// Largest magnitude of n values; `bad` set when one is not finite.
inline float max_magnitude(const float* x, uint64_t n, float m, int& bad) {
  for (uint64_t k = 0; k < n; ++k) {
    const float a = std::fabs(x[k]);
    if (!std::isfinite(a)) bad = 1;
    m = std::max(m, a);
  }
  return m;
}

// Exact Gram matrix of the vectors produced by `fill(v, chunk, out)` for
// v < nv over the whole tensor: max-magnitude pass, then products summed as
// 64-bit fixed point in 128-bit integers (exact, hence order-independent).
template <typename Fill>
std::vector<double> exact_gram(size_t nv, ElementRange range, uint64_t chunk_elems, MPI_Comm comm,
                               const std::string& name, Fill fill) {
  std::vector<std::vector<float>> v(
      nv, std::vector<float>(std::min<uint64_t>(chunk_elems, range.size())));
  float gmax = 0.0f;
  int bad = 0;
  for (const auto& c : chunks_of(range, chunk_elems)) {
    for (size_t a = 0; a < nv; ++a) {
      fill(a, c, v[a].data());
      gmax = max_magnitude(v[a].data(), c.size(), gmax, bad);
    }
  }
  allreduce_in_place(std::span<float>(&gmax, 1), MPI_MAX, comm);
  allreduce_in_place(std::span<int>(&bad, 1), MPI_MAX, comm);
  if (bad) throw_input("tensor {}: non-finite values in the inputs", name);
  std::vector<double> gram(nv * nv, 0.0);
  if (gmax == 0.0f) return gram;
  const double scale = gram_scale(gmax);
  std::vector<i128> acc(nv * nv, 0);
  for (const auto& c : chunks_of(range, chunk_elems)) {
    for (size_t a = 0; a < nv; ++a) fill(a, c, v[a].data());
    for (size_t a = 0; a < nv; ++a)
      for (size_t b = a; b < nv; ++b)
        acc[a * nv + b] += fixed_dot(v[a].data(), v[b].data(), c.size(), scale);
  }
  allreduce_sum_i128(std::span(acc), comm);
  for (size_t a = 0; a < nv; ++a)
    for (size_t b = a; b < nv; ++b)
      gram[a * nv + b] = gram[b * nv + a] = static_cast<double>(acc[a * nv + b]) / scale;
  return gram;
}

// The chunks of `range` go to the threads whole: run(c, out) writes chunk
// c's output bytes to `out` on the calling thread alone (the kernels' own
// threads are not nested: omp_in_parallel), and the same thread hands them to
// the sink, so one thread's write into the page cache overlaps another's
// arithmetic. When the sink ran on one thread after a kernel on all of them,
// the other threads waited through every write: in a file merge of 8 x 64
// MiB bf16 on 2 cores, a quarter of the samples were that wait
// (bench/RESULTS.md). Chunks hold at most chunk_elems elements, and at least
// kChunksPerThread per thread where the range allows (with fewer, the
// threads wait for each other at the end of every tensor); a range too small
// to give each thread a chunk of kMinThreadChunk elements runs one chunk at a
// time on all threads. `run` must be safe to call from several threads at
// once for different chunks. An exception does not leave the parallel
// region: the first is kept and rethrown, and chunks not yet started are
// skipped.
template <class Run>
void parallel_chunks(ElementRange range, uint64_t chunk_elems, size_t osz, const ChunkSink& sink,
                     const Run& run) {
  constexpr uint64_t kMinThreadChunk = uint64_t{1} << 16;
  constexpr uint64_t kChunksPerThread = 4;
  constexpr uint64_t kAlign = 4096;  // elements: chunks start on whole pages of output
  const auto threads = static_cast<uint64_t>(std::max(1, omp_get_max_threads()));
  const uint64_t pieces = threads * kChunksPerThread;
  uint64_t chunk = std::min(chunk_elems, (range.size() + pieces - 1) / pieces);
  if (chunk >= kAlign) chunk = std::min(chunk_elems, (chunk + kAlign - 1) / kAlign * kAlign);
  chunk = std::max<uint64_t>(chunk, 1);
  const std::vector<ElementRange> chunks = chunks_of(range, chunk);
  const auto nc = static_cast<int64_t>(chunks.size());
  if (!(threads > 1 && nc > 1 && chunk >= kMinThreadChunk)) {
    const uint64_t whole = std::min<uint64_t>(chunk_elems, std::max<uint64_t>(range.size(), 1));
    std::vector<std::byte> out(std::min<uint64_t>(whole, range.size()) * osz);
    for (const auto& c : chunks_of(range, whole)) {
      run(c, out.data());
      sink(c, std::span<const std::byte>(out.data(), c.size() * osz));
    }
    return;
  }
  std::exception_ptr failure;
  bool failed = false;
#pragma omp parallel
  {
    std::vector<std::byte> out(chunk * osz);
#pragma omp for schedule(dynamic, 1)
    for (int64_t ci = 0; ci < nc; ++ci) {
      bool stop = false;
#pragma omp atomic read
      stop = failed;
      if (stop) continue;
      try {
        const ElementRange c = chunks[static_cast<size_t>(ci)];
        run(c, out.data());
        sink(c, std::span<const std::byte>(out.data(), c.size() * osz));
      } catch (...) {
#pragma omp critical(parallel_chunks_failure)
        if (!failure) failure = std::current_exception();
#pragma omp atomic write
        failed = true;
      }
    }
  }
  if (failure) std::rethrow_exception(failure);
}

// The pointers to element c.begin of each input.
std::vector<const void*> advanced(std::span<const void* const> inputs, DType dtype,
                                  ElementRange c) {
  std::vector<const void*> p(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    p[i] = static_cast<const char*>(inputs[i]) + c.begin * elem_size(dtype);
  return p;
}

void weighted_sum_chunks(const std::vector<const void*>& inputs, DType dtype,
                         const std::vector<float>& w, ElementRange range, DType out_dtype,
                         uint64_t chunk_elems, const ChunkSink& sink) {
  parallel_chunks(
      range, chunk_elems, elem_size(out_dtype), sink, [&](ElementRange c, std::byte* out) {
        fused_weighted_sum(advanced(inputs, dtype, c), dtype, w, out, out_dtype, c.size());
      });
}

// Runs work(state, chunk) for each of `chunks`, split among the threads when
// `parallel` (else all on this one), each thread with a state of its own,
// make(); then combine(state) for each thread's, one thread at a time. For
// passes whose results do not depend on the order (counts, exact sums). An
// exception in any thread (a failed allocation under a memory limit, bad
// input) is carried out of the region and rethrown.
template <class Make, class Work, class Combine>
void chunks_per_thread(const std::vector<ElementRange>& chunks, bool parallel, Make make, Work work,
                       Combine combine) {
  const auto nc = static_cast<int64_t>(chunks.size());
  std::exception_ptr failure;
#pragma omp parallel if (parallel)
  {
    bool ok = true;
    const auto record = [&] {
#pragma omp critical(chunks_per_thread_failure)
      if (!failure) failure = std::current_exception();
      ok = false;
    };
    std::optional<decltype(make())> state;
    try {
      state.emplace(make());
    } catch (...) {
      record();
    }
#pragma omp for schedule(dynamic)
    for (int64_t ci = 0; ci < nc; ++ci) {
      if (!ok) continue;
      try {
        work(*state, chunks[static_cast<size_t>(ci)]);
      } catch (...) {
        record();
      }
    }
    if (ok) {
#pragma omp critical(chunks_per_thread_combine)
      combine(*state);
    }
  }
  if (failure) std::rethrow_exception(failure);
}

// chunks_per_thread over `range` in chunks of cap / threads elements, each
// state make(chunk elements): about the memory of one thread with the whole
// chunk. Returns false, having done nothing, where threads do not pay
// (!worth, one thread, inside a parallel region, or a single chunk): the
// caller then takes its one-thread path.
template <class Make, class Work, class Combine>
bool threaded_chunks(ElementRange range, uint64_t cap, bool worth, Make make, Work work,
                     Combine combine) {
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const uint64_t sub = std::max<uint64_t>(1, cap / static_cast<uint64_t>(std::max(threads, 1)));
  const std::vector<ElementRange> chunks = chunks_of(range, sub);
  if (!worth || threads < 2 || chunks.size() < 2) return false;
  chunks_per_thread(
      chunks, true, [&] { return make(sub); }, work, combine);
  return true;
}

// One pass of the radix select: for each active set i, the histogram of the
// digit d.shift.. d.shift + d.width - 1 of the keys of this rank's range whose
// bits above the digit equal d.prefix[i] (all keys when d.all); `local` gets
// this rank's counts, `global` their sum over all ranks. fill(chunk, i, keys) writes set i's keys
// of the chunk to keys[0..chunk size); it is called for the chunks in order, and within a chunk for
// the sets in order. A KeyFill that can be made anew for a chunk size, KeyFill(sources, chunk
// elements), works on its own state only: then the chunks go to the threads, each with a KeyFill
// and histograms of its own (counts: any order gives the same totals). TIES' selection over 7 x 32
// Mi keys took 1.9 s on one thread.
struct Digit {
  int shift = 0, width = 16;
  bool all = true;                        // count every key (the first pass)
  const std::vector<uint64_t>* prefix{};  // else only keys >> (shift + width) == prefix[i]
};

template <typename KeyFill>
void key_histogram(const std::vector<char>& active, const Digit& d, ElementRange range,
                   uint64_t chunk_elems, MPI_Comm comm, std::vector<uint64_t>& local,
                   std::vector<uint64_t>& global, KeyFill& fill) {
  const uint64_t cap = std::min<uint64_t>(chunk_elems, range.size());
  const size_t buckets = size_t{1} << d.width;
  const uint32_t mask = static_cast<uint32_t>(buckets - 1);
  std::fill(local.begin(), local.end(), 0);
  const auto count = [&](KeyFill& f, ElementRange c, std::vector<uint32_t>& keys,
                         std::vector<uint64_t>& hist) {
    const uint64_t n = c.size();
    for (size_t i = 0; i < active.size(); ++i) {
      if (!active[i]) continue;
      f(c, i, keys.data());
      uint64_t* h = hist.data() + i * buckets;
      const uint32_t* k = keys.data();
      if (d.all) {
        for (uint64_t j = 0; j < n; ++j) ++h[(k[j] >> d.shift) & mask];
        continue;
      }
      // Later passes count the few keys under the prefix chosen so far
      // (about 1% of them): a block of 16 is tested at once, in a loop that
      // vectorizes, and only a block with a match is counted one at a time.
      const int high = d.shift + d.width;  // < 32 after the first pass
      const auto p = static_cast<uint32_t>((*d.prefix)[i]);
      constexpr uint64_t kBlock = 16;
      uint64_t j0 = 0;
      for (; j0 + kBlock <= n; j0 += kBlock) {
        uint32_t hits = 0;
        for (uint64_t j = j0; j < j0 + kBlock; ++j)
          hits |= static_cast<uint32_t>(k[j] >> high == p);
        if (hits == 0) continue;
        for (uint64_t j = j0; j < j0 + kBlock; ++j)
          if (k[j] >> high == p) ++h[(k[j] >> d.shift) & mask];
      }
      for (uint64_t j = j0; j < n; ++j)
        if (k[j] >> high == p) ++h[(k[j] >> d.shift) & mask];
    }
  };
  if constexpr (requires { KeyFill(fill.s, cap); }) {
    // Threads pay from about a million keys: each zeroes and sums histograms
    // of up to 65536 bins per set.
    struct State {
      KeyFill f;
      std::vector<uint32_t> keys;
      std::vector<uint64_t> hist;
    };
    const auto sets = static_cast<uint64_t>(std::count(active.begin(), active.end(), 1));
    if (threaded_chunks(
            range, cap, range.size() * sets >= kParallelKeysMin,
            [&](uint64_t sub) {
              return State{KeyFill(fill.s, sub), std::vector<uint32_t>(sub),
                           std::vector<uint64_t>(local.size(), 0)};
            },
            [&](State& t, ElementRange c) { count(t.f, c, t.keys, t.hist); },
            [&](State& t) {
              for (size_t b = 0; b < local.size(); ++b) local[b] += t.hist[b];
            })) {
      std::copy(local.begin(), local.end(), global.begin());
      allreduce_in_place(std::span(global), MPI_SUM, comm);
      return;
    }
  }
  std::vector<uint32_t> keys(cap);
  for (const auto& c : chunks_of(range, chunk_elems)) count(fill, c, keys, local);
  std::copy(local.begin(), local.end(), global.begin());
  allreduce_in_place(std::span(global), MPI_SUM, comm);
}

// The exact top-k selection over `sets` key sequences of numel keys each (the
// keys of element range c come from `fill`): per set, the k[i] largest keys,
// among equal keys the lowest global index first. k[i] >= numel keeps all, 0
// none. Two or four histogram passes (16- or 8-bit digits), then an exclusive
// scan of the per-rank counts of keys equal to the threshold, and where a
// rank's quota of them ends inside its range, one more pass to find where.
// Every rank knows numel and k, so all take the same passes.
template <typename KeyFill>
TopKSelection topk_by_keys(size_t sets, uint64_t numel, std::span<const uint64_t> kk,
                           ElementRange range, uint64_t chunk_elems, MPI_Comm comm, KeyFill& fill) {
  const size_t N = sets;
  TopKSelection sel;
  sel.thr_bits.assign(N, 0);
  sel.tie_cutoff.assign(N, std::numeric_limits<uint64_t>::max());  // keep all
  std::vector<uint64_t> k(kk.begin(), kk.end());
  std::vector<char> active(N, 0);
  for (size_t i = 0; i < N; ++i) {
    if (k[i] >= numel) continue;
    if (k[i] == 0) {  // keep nothing
      sel.thr_bits[i] = 0xffffffffu;
      sel.tie_cutoff[i] = 0;
    } else if (k[i] < numel) {
      active[i] = 1;
    }
  }
  if (std::find(active.begin(), active.end(), 1) == active.end()) return sel;
  // One histogram pass per digit, from the highest: each counts the next
  // digit among the keys that match the digits chosen so far, and keeps the
  // digit where the k[i]-th largest key falls. After the last pass the
  // prefix is the threshold key itself.
  const int width = numel >= kWideDigitMin ? 16 : 8;
  const size_t buckets = size_t{1} << width;
  std::vector<uint64_t> local(N * buckets, 0), global(N * buckets, 0);
  std::vector<uint64_t> prefix(N, 0), above(N, 0);
  std::vector<uint64_t> ties_to_keep(N, 0), local_eq(N, 0), eq_before(N, 0);
  for (int shift = 32 - width; shift >= 0; shift -= width) {
    const bool first = shift == 32 - width, last = shift == 0;
    key_histogram(active, Digit{shift, width, first, &prefix}, range, chunk_elems, comm, local,
                  global, fill);
    for (size_t i = 0; i < N; ++i) {
      if (!active[i]) continue;
      const uint64_t* h = global.data() + i * buckets;
      uint64_t cum = above[i];
      for (size_t bkt = buckets; bkt-- > 0;) {
        if (cum + h[bkt] >= k[i]) {
          prefix[i] = (prefix[i] << width) | bkt;
          above[i] = cum;
          if (last) {
            sel.thr_bits[i] = static_cast<uint32_t>(prefix[i]);
            ties_to_keep[i] = k[i] - cum;
            local_eq[i] = local[i * buckets + bkt];
          }
          break;
        }
        cum += h[bkt];
      }
    }
  }
  // Ties (key == threshold) are kept in global index order: ranks own
  // ascending ranges, so an exclusive scan tells each rank how many precede it.
  exscan_sum(local_eq, eq_before, comm);
  std::vector<uint64_t> quota(N, 0);
  std::vector<char> scan(N, 0);
  bool any_scan = false;
  for (size_t i = 0; i < N; ++i) {
    if (!active[i]) continue;
    quota[i] =
        ties_to_keep[i] > eq_before[i] ? std::min(ties_to_keep[i] - eq_before[i], local_eq[i]) : 0;
    if (quota[i] == 0) {
      sel.tie_cutoff[i] = range.begin;
    } else if (quota[i] == local_eq[i]) {
      sel.tie_cutoff[i] = range.end;
    } else {
      sel.tie_cutoff[i] = range.begin;  // found by the scan below
      scan[i] = 1;
      any_scan = true;
    }
  }
  if (any_scan) {
    std::vector<uint32_t> keys(std::min<uint64_t>(chunk_elems, range.size()));
    std::vector<uint64_t> seen(N, 0);
    for (const auto& c : chunks_of(range, chunk_elems)) {
      for (size_t i = 0; i < N; ++i) {
        if (!scan[i] || seen[i] == quota[i]) continue;
        fill(c, i, keys.data());
        // The chunk's ties counted by a loop that vectorizes; only the chunk
        // where the quota runs out is walked to the tie that ends it.
        const uint32_t thr = sel.thr_bits[i];
        const uint32_t* const key = keys.data();
        uint64_t ties = 0;
        for (uint64_t j = 0; j < c.size(); ++j) ties += key[j] == thr ? 1 : 0;
        if (seen[i] + ties < quota[i]) {
          seen[i] += ties;
          continue;
        }
        uint64_t left = quota[i] - seen[i], j = 0;
        for (; left > 0; ++j) left -= key[j] == thr ? 1 : 0;
        sel.tie_cutoff[i] = c.begin + j;
        seen[i] = quota[i];
      }
    }
  }
  return sel;
}

// Keys of the task vectors: |delta_i| as IEEE bits (the base decoded once per chunk).
struct DeltaKeys {
  const TensorSources& s;
  std::vector<float> b, d;
  uint64_t decoded = std::numeric_limits<uint64_t>::max();  // chunk whose base b holds
  DeltaKeys(const TensorSources& src, uint64_t cap) : s(src), b(cap), d(cap) {}
  void operator()(ElementRange c, size_t i, uint32_t* keys) {
    if (decoded != c.begin) {
      decode(s.dtype, s.base, c.begin, c.size(), b.data());
      decoded = c.begin;
    }
    decode_delta(s, i, c, b.data(), d.data());
    for (uint64_t j = 0; j < c.size(); ++j) keys[j] = key_of(d[j]);
  }
};

// The chunks of `range` for per-row work: boundaries at multiples of
// rows_per_chunk rows (whole rows, except where the range cuts one), at least
// one row per chunk.
std::vector<ElementRange> row_chunks(ElementRange range, uint64_t row_len, uint64_t chunk_elems) {
  std::vector<ElementRange> out;
  const uint64_t step = std::max<uint64_t>(1, chunk_elems / row_len) * row_len;
  for (uint64_t b = range.begin; b < range.end;) {
    const uint64_t e = std::min(range.end, (b / step + 1) * step);
    out.push_back({b, e});
    b = e;
  }
  return out;
}

// SCE's per-element variance of the task vectors over chunk c, as IEEE bits:
// population_variance's operations in its order, one task vector at a time
// (each decoded twice) so that memory does not grow with the model count.
struct SceVariance {
  const TensorSources& s;
  std::vector<float> b, d, mean, acc;
  SceVariance(const TensorSources& src, uint64_t cap)
      : s(src), b(cap), d(cap), mean(cap), acc(cap) {}
  void operator()(ElementRange c, size_t, uint32_t* keys) {
    const uint64_t n = c.size();
    const auto fN = static_cast<float>(s.models.size());
    decode(s.dtype, s.base, c.begin, n, b.data());
    std::fill_n(mean.begin(), n, 0.0f);
    std::fill_n(acc.begin(), n, 0.0f);
    for (size_t i = 0; i < s.models.size(); ++i) {
      decode_delta(s, i, c, b.data(), d.data());
      for (uint64_t j = 0; j < n; ++j) mean[j] = ops::add(mean[j], d[j]);
    }
    for (uint64_t j = 0; j < n; ++j) mean[j] = ops::div(mean[j], fN);
    for (size_t i = 0; i < s.models.size(); ++i) {
      decode_delta(s, i, c, b.data(), d.data());
      for (uint64_t j = 0; j < n; ++j) {
        const float t = ops::sub(d[j], mean[j]);
        acc[j] = ops::add(acc[j], ops::mul(t, t));
      }
    }
    for (uint64_t j = 0; j < n; ++j) keys[j] = key_of(ops::div(acc[j], fN));
  }
};

}  // namespace

TopKSelection ties_select(const TensorSources& s, std::span<const double> density,
                          ElementRange range, uint64_t chunk_elems, MPI_Comm comm) {
  std::vector<uint64_t> k(s.models.size(), s.numel);
  for (size_t i = 0; i < k.size(); ++i)
    if (density[i] < 1.0)
      k[i] = static_cast<uint64_t>(std::max(0.0, density[i]) * static_cast<double>(s.numel));
  return topk_select(s, k, range, chunk_elems, comm);
}

OutlierCounts breadcrumbs_counts(uint64_t numel, double density, double gamma) {
  OutlierCounts c;
  if (density >= 1.0) return c;
  // As mergekit: int(density * numel), int(gamma * numel), the rest at the bottom.
  const auto n = static_cast<double>(numel);
  const auto target = static_cast<int64_t>(std::max(0.0, density) * n);
  auto top = static_cast<int64_t>(std::clamp(gamma, 0.0, 1.0) * n);
  int64_t bot = static_cast<int64_t>(numel) - target - top;
  if (bot < 0) {
    top += bot;
    bot = 0;
  }
  c.n_bot = static_cast<uint64_t>(bot);
  c.n_top = static_cast<uint64_t>(std::max<int64_t>(0, top));
  return c;
}

TopKSelection topk_select(const TensorSources& s, std::span<const uint64_t> kk, ElementRange range,
                          uint64_t chunk_elems, MPI_Comm comm) {
  DeltaKeys keys(s, std::min<uint64_t>(chunk_elems, range.size()));
  return topk_by_keys(s.models.size(), s.numel, kk, range, chunk_elems, comm, keys);
}

void della_ranks(const TensorSources& s, size_t i, ElementRange c, uint64_t L, uint32_t* out) {
  if (c.empty()) return;
  KS_CHECK(L >= 1 && L <= 0xffffffffull, "della: rows of 1 to 2^32 - 1 elements");
  std::vector<float> b(L), x(L);
  // Ascending key, then descending index (the lower index ranks higher): the
  // row listed from its last element to its first as key << 32 | position,
  // sorted by an LSD radix sort on the key's 31 bits. Each pass is stable, so
  // equal keys keep the positions' order. Three passes of 11, 10 and 10 bits,
  // whose histograms one read fills, moving one 64-bit word per element; a
  // pass whose digit is the same across the row is skipped. Linear in the row
  // (a comparison sort was most of della's time; then four 8-bit passes
  // over separate key and index arrays, each counting its own histogram,
  // were 60% of a della merge).
  constexpr int kShift[3] = {0, 11, 21};
  constexpr uint32_t kMask[3] = {0x7ffu, 0x3ffu, 0x3ffu};
  std::vector<uint64_t> v(L), v2(L);
  std::vector<uint32_t> h0(2048), h1(1024), h2(1024);
  uint32_t* const hist[3] = {h0.data(), h1.data(), h2.data()};
  for (uint64_t row = c.begin / L; row * L < c.end; ++row) {
    const uint64_t r0 = row * L;
    decode(s.dtype, s.base, r0, L, b.data());
    decode(s.dtype, s.models[i], r0, L, x.data());
    std::fill(h0.begin(), h0.end(), 0u);
    std::fill(h1.begin(), h1.end(), 0u);
    std::fill(h2.begin(), h2.end(), 0u);
    for (uint64_t p = 0; p < L; ++p) {
      const uint64_t j = L - 1 - p;
      const uint32_t key = key_of(ops::sub(x[j], b[j]));
      v[p] = uint64_t{key} << 32 | p;
      ++h0[key & kMask[0]];
      ++h1[(key >> kShift[1]) & kMask[1]];
      ++h2[key >> kShift[2]];  // key < 2^31
    }
    for (int pass = 0; pass < 3; ++pass) {
      const int shift = 32 + kShift[pass];
      const uint32_t mask = kMask[pass];
      uint32_t* const h = hist[pass];
      if (h[(v[0] >> shift) & mask] == L) continue;  // one bucket: order kept
      uint32_t sum = 0;  // the histogram becomes each bucket's first slot
      for (uint32_t d = 0; d <= mask; ++d) {
        const uint32_t n = h[d];
        h[d] = sum;
        sum += n;
      }
      for (uint64_t p = 0; p < L; ++p) v2[h[(v[p] >> shift) & mask]++] = v[p];
      v.swap(v2);
    }
    for (uint64_t q = 0; q < L; ++q) {
      const uint64_t e = r0 + (L - 1 - (v[q] & 0xffffffffu));
      if (e >= c.begin && e < c.end) out[e - c.begin] = static_cast<uint32_t>(q);
    }
  }
}

double fusion_row_divergence(const float* x, const float* base, uint64_t n) {
  // softmax with the row's maximum subtracted, in double, in index order.
  double mx = -std::numeric_limits<double>::infinity(), mb = mx;
  for (uint64_t j = 0; j < n; ++j) {
    mx = std::max(mx, static_cast<double>(x[j]));
    mb = std::max(mb, static_cast<double>(base[j]));
  }
  double sx = 0.0, sb = 0.0;
  for (uint64_t j = 0; j < n; ++j) {
    sx += std::exp(static_cast<double>(x[j]) - mx);
    sb += std::exp(static_cast<double>(base[j]) - mb);
  }
  double kl = 0.0;
  for (uint64_t j = 0; j < n; ++j) {
    const double p = std::exp(static_cast<double>(x[j]) - mx) / sx + 1e-8;
    const double q = std::exp(static_cast<double>(base[j]) - mb) / sb + 1e-8;
    kl += p * std::log(p / q);
  }
  return kl;
}

namespace {
// |x| = m 2^(max(e, 1) - 150) with m < 2^24, from its bits u = e << 23 | frac
// (sign cleared): m, the implicit bit set for normals.
inline uint64_t significand(uint32_t u) {
  return (u & 0x7fffffu) | ((u >> 23) != 0 ? 0x800000u : 0u);
}
}  // namespace

void ExactSum::add(float x) {
  const uint32_t u = ops::f32_bits(x) & 0x7fffffffu;
  const uint32_t e = u >> 23;
  if (e == 255) {
    ++((u & 0x7fffffu) != 0 ? nan_ : inf_);
    return;
  }
  const uint64_t m = significand(u);
  bins_[e] += power_ == 1 ? m : m * m;
}

namespace {

// Values one window sum takes: each term is below 2^55, so 256 stay below 2^63.
constexpr size_t kWindowValues = 256;

// The exact sum of |x| over n <= kWindowValues values whose nonzero ones lie
// within 32 binades: with E = max(exponent, 1), x = m 2^(E - 150), and over
// the block, with lo the least E - 1 of a nonzero value, the sum is
// sum m << (E - 1 - lo), a 64-bit integer in units of bin lo + 1. False
// (nothing summed) for an Inf, a NaN or a wider range. Both loops vectorize,
// unlike one bin per value; the AVX2 clone has the per-lane 64-bit shifts
// SSE2 lacks. Model deltas (DARE's L1 norms) fit almost always.
#if defined(__x86_64__)
[[gnu::target_clones("avx2", "default")]]
#endif
bool abs_sum_in_window(const float* x, size_t n, uint32_t& bin, uint64_t& sum) {
  uint32_t lo = 255, hi = 0, special = 0;
  for (size_t j = 0; j < n; ++j) {
    const uint32_t u = ops::f32_bits(x[j]) & 0x7fffffffu;
    const uint32_t e = u >> 23;
    const uint32_t e1 = e - static_cast<uint32_t>(e != 0);  // max(e, 1) - 1
    const uint32_t zero = ops::mask(u == 0);
    // Masks, not selects: with selects GCC left this loop scalar.
    lo = std::min(lo, e1 | (zero & 255u));
    hi = std::max(hi, e1 & ~zero);
    special |= static_cast<uint32_t>(e == 255);
  }
  sum = 0;
  bin = 0;
  if (lo == 255) return true;  // zeros only: nothing to add
  if (special != 0 || hi - lo >= 32) return false;
  uint64_t s = 0;
  for (size_t j = 0; j < n; ++j) {
    const uint32_t u = ops::f32_bits(x[j]) & 0x7fffffffu;
    const uint32_t e = u >> 23;
    const uint32_t e1 = e - static_cast<uint32_t>(e != 0);
    s += significand(u) << ((e1 - lo) & 31u);  // a zero's shift is any: 0 << k = 0
  }
  sum = s;
  bin = lo + 1;
  return true;
}

}  // namespace

void ExactSum::add(std::span<const float> xs) {
  if (power_ == 1) {
    // Blocks of kWindowValues by window sums, a block with an Inf, a NaN or
    // a wide range one value at a time. add(float) per value was most of a
    // DARE merge's L1 pass.
    for (size_t at = 0; at < xs.size(); at += kWindowValues) {
      const size_t n = std::min(kWindowValues, xs.size() - at);
      uint32_t bin = 0;
      uint64_t sum = 0;
      if (abs_sum_in_window(xs.data() + at, n, bin, sum))
        bins_[bin] += sum;
      else
        for (size_t j = at; j < at + n; ++j) add(xs[j]);
    }
    return;
  }
  // Squares: partial sums per exponent in 64 bits, eight copies, value j in
  // copy j % 8, so that neighbouring values, which mostly share an exponent,
  // do not wait on one another's read-modify-write of one bin. Each copy
  // takes kFlush / 8 values between flushes into the 128-bit bins: 2^14
  // squares below 2^48 stay below 2^64. An Inf or NaN lands in bin 255,
  // which is never flushed, and is counted apart.
  constexpr size_t kCopies = 8, kFlush = size_t{1} << 17;
  uint64_t part[kCopies][256];
  for (size_t at = 0; at < xs.size(); at += kFlush) {
    std::memset(part, 0, sizeof part);
    const size_t end = std::min(xs.size(), at + kFlush);
    uint64_t nan = 0, inf = 0;
    for (size_t j = at; j < end; ++j) {
      const uint32_t u = ops::f32_bits(xs[j]) & 0x7fffffffu;
      const uint32_t e = u >> 23, frac = u & 0x7fffffu;
      const uint64_t m = significand(u);
      part[j % kCopies][e] += m * m;
      nan += (e == 255) & (frac != 0);
      inf += (e == 255) & (frac == 0);
    }
    nan_ += nan;
    inf_ += inf;
    for (size_t c = 0; c < kCopies; ++c)
      for (size_t e = 0; e < 255; ++e) bins_[e] += part[c][e];
  }
}

void ExactSum::merge(const ExactSum& other) {
  for (size_t e = 0; e < 255; ++e) bins_[e] += other.bins_[e];
  inf_ += other.inf_;
  nan_ += other.nan_;
}

void ExactSum::allreduce(MPI_Comm comm) {
  std::vector<u128> mine(bins_, bins_ + 255);
  mine.push_back(inf_);
  mine.push_back(nan_);
  const std::vector<std::byte> bytes = allgather_bytes(std::as_bytes(std::span(mine)), comm);
  std::vector<u128> all(bytes.size() / sizeof(u128));
  std::memcpy(all.data(), bytes.data(), bytes.size());
  std::fill(std::begin(bins_), std::end(bins_), 0);
  inf_ = nan_ = 0;
  for (size_t r = 0; r < all.size() / mine.size(); ++r) {
    const u128* a = all.data() + r * mine.size();
    for (size_t e = 0; e < 255; ++e) bins_[e] += a[e];
    inf_ += static_cast<uint64_t>(a[255]);
    nan_ += static_cast<uint64_t>(a[256]);
  }
}

double ExactSum::value() const {
  if (nan_ != 0) return std::numeric_limits<double>::quiet_NaN();
  if (inf_ != 0) return std::numeric_limits<double>::infinity();
  // The total as an integer multiple of 2^-149 (power 1) or 2^-298 (power 2):
  // bin e shifted by power * (max(e, 1) - 1) bits, below 2^640.
  constexpr size_t kLimbs = 10;
  uint64_t limb[kLimbs] = {};
  auto add_at = [&](size_t q, uint64_t v) {
    for (; v != 0 && q < kLimbs; ++q) {
      const uint64_t before = limb[q];
      limb[q] += v;
      v = limb[q] < before ? 1 : 0;
    }
  };
  for (uint32_t e = 0; e < 255; ++e) {
    if (bins_[e] == 0) continue;
    const uint32_t shift = static_cast<uint32_t>(power_) * (std::max(e, 1u) - 1u);
    const uint32_t q = shift / 64, r = shift % 64;
    const auto lo = static_cast<uint64_t>(bins_[e]), hi = static_cast<uint64_t>(bins_[e] >> 64);
    add_at(q, lo << r);
    add_at(q + 1, (hi << r) | (r != 0 ? lo >> (64 - r) : 0));
    if (r != 0) add_at(q + 2, hi >> (64 - r));
  }
  size_t top = kLimbs;
  while (top > 0 && limb[top - 1] == 0) --top;
  if (top == 0) return 0.0;
  // The 64 bits from the highest set bit down, the bits below folded into
  // the lowest one (sticky): converting that rounds like the exact value.
  const int h = 64 * static_cast<int>(top - 1) + 63 - __builtin_clzll(limb[top - 1]);
  auto bit_window = [&](int lo_bit) {  // bits [lo_bit, lo_bit + 64)
    uint64_t w = 0;
    const int q = lo_bit / 64, r = lo_bit % 64;
    w = limb[q] >> r;
    if (r != 0 && static_cast<size_t>(q + 1) < kLimbs) w |= limb[q + 1] << (64 - r);
    return w;
  };
  uint64_t w;
  int lo_bit = 0;
  if (h < 64) {
    w = limb[0];
  } else {
    lo_bit = h - 63;
    w = bit_window(lo_bit);
    bool sticky = false;
    for (int q = 0; q < lo_bit / 64; ++q) sticky = sticky || limb[q] != 0;
    if (lo_bit % 64 != 0)
      sticky = sticky || (limb[lo_bit / 64] & ((1ull << (lo_bit % 64)) - 1)) != 0;
    if (sticky) w |= 1;
  }
  return std::ldexp(static_cast<double>(w), lo_bit - (power_ == 1 ? 149 : 298));
}

namespace {

// Points a fused kernel's arguments at chunk c: its inputs (`ptrs`, already
// advanced to c.begin), the base advanced likewise, c's first index and
// length, and the output buffer.
template <typename Args>
void aim_at_chunk(Args& a, std::span<const void* const> ptrs, const void* base, DType in_dtype,
                  ElementRange c, std::byte* out) {
  a.inputs = ptrs;
  a.base =
      base == nullptr ? nullptr : static_cast<const char*>(base) + c.begin * elem_size(in_dtype);
  a.first_index = c.begin;
  a.out = out;
  a.n = c.size();
}

// The fused kernel's pass over `chunks` of this rank's range: per chunk c,
// `a` gets the inputs (and the base, when there is one) advanced to c.begin,
// first_index, out and n; `run(a, c)` sets anything else the chunk needs
// and calls the kernel; the sink receives the chunk's output bytes.
template <typename Args, typename Run>
void fused_chunks(Args& a, std::span<const void* const> inputs, const void* base, DType in_dtype,
                  std::span<const ElementRange> chunks, DType out_dtype, const ChunkSink& sink,
                  Run&& run) {
  const size_t osz = elem_size(out_dtype);
  uint64_t cap = 0;
  for (const auto& c : chunks) cap = std::max(cap, c.size());
  std::vector<std::byte> out(cap * osz);
  for (const auto& c : chunks) {
    const std::vector<const void*> ptrs = advanced(inputs, in_dtype, c);
    aim_at_chunk(a, ptrs, base, in_dtype, c, out.data());
    run(a, c);
    sink(c, std::span<const std::byte>(out.data(), c.size() * osz));
  }
}

// fused_chunks for a kernel that needs nothing but its arguments, per chunk:
// the chunks go to the threads whole (parallel_chunks), each with its own
// copy of `proto` advanced to the chunk.
template <typename Args, typename Kernel>
void fused_chunks_parallel(const Args& proto, std::span<const void* const> inputs, const void* base,
                           DType in_dtype, ElementRange range, uint64_t chunk_elems,
                           DType out_dtype, const ChunkSink& sink, Kernel kernel) {
  parallel_chunks(range, chunk_elems, elem_size(out_dtype), sink,
                  [&](ElementRange c, std::byte* out) {
                    Args a = proto;
                    const std::vector<const void*> ptrs = advanced(inputs, in_dtype, c);
                    aim_at_chunk(a, ptrs, base, in_dtype, c, out);
                    kernel(a);
                  });
}

// The task-vector merges that keep each entry of a task vector or drop it,
// and with `rescale` multiply its survivors by mergekit's L1 factor
// (sparsify.rescaled_masked_tensor: sum |delta| / sum |kept delta| over the
// whole task vector, none when either sum is below 1e-7): della* (a coin
// flip against a probability set by the entry's magnitude rank in its row),
// dare_* (a coin flip against the density) and ties / breadcrumbs* with
// rescale (a magnitude mask). Every keep decision is the kernel's Ranked one,
//   dare_uniform(seed key, i, index) < della_prob(rank, row_len, low[i], eps[i]),
// so the L1 pass and the merge pass decide alike: della's ranks and
// probabilities; rank 0, eps 0 and low = density for DARE; for a mask, ranks
// 0 (dropped) and 1 (kept) with row_len 2, low -1 and eps 1 (probabilities -1
// and 1). A model that is not pruned has low 2 (always kept) and no rescale.
// The sums are exact (ExactSum) and the decisions counter-based per element,
// so any split among ranks gives the same bytes.
struct KeepRule {
  uint64_t row_len = 1;    // della_prob's row length
  uint64_t chunk_row = 1;  // chunks hold whole rows of this many elements
  std::vector<float> low, eps;
  std::vector<char> pruned;  // per model: sparsified (and rescaled with m.rescale)
  // Fills the ranks of model i over chunk c (c.size() entries), given its
  // task vector there when needs_delta; empty: all 0. Called from several
  // threads at once (for different models or chunks).
  std::function<void(ElementRange c, size_t i, const float* delta, uint32_t* out)> ranks;
  bool needs_delta = false;
};

MergeTensorStats rescaled_merge(const TensorSources& s, const TensorMethod& m, const KeepRule& k,
                                ElementRange range, DType out_dtype, uint64_t chunk_elems,
                                MPI_Comm comm, const ChunkSink& sink) {
  MergeTensorStats stats;
  const size_t N = s.models.size();
  std::vector<float> scale(N, 1.0f);
  const uint64_t seed_key = dare_seed_key(m.seed, s.name);
  // The ranks of all N inputs for a chunk take 4 N bytes per element: chunks
  // of chunk_elems / N elements (whole rows, at least one) keep that to one
  // chunk of fp32.
  const auto chunks = row_chunks(range, k.chunk_row, std::max<uint64_t>(1, chunk_elems / N));
  uint64_t cap = 0;
  for (const auto& c : chunks) cap = std::max(cap, c.size());
  const auto ni = static_cast<int64_t>(N);
  // Threads pay off from about this much work, in element-models: a rank's
  // whole range for the L1 pass (one region), a chunk for the rank fills (a
  // region per chunk); below it, one thread.
  constexpr uint64_t kThreadsMin = uint64_t{1} << 18;
  constexpr uint64_t kL1ThreadsMin = uint64_t{1} << 20;
  // The L1 rescale: sum |delta| over the whole task vector, and over its
  // survivors; the chunks split among threads (exact sums: any order).
  bool any_rescale = false;
  for (size_t i = 0; i < N; ++i) any_rescale = any_rescale || (m.rescale && k.pruned[i]);
  if (any_rescale) {
    std::vector<ExactSum> before(N, ExactSum(1)), after(N, ExactSum(1));
    struct L1Sums {
      std::vector<ExactSum> before, after;
      std::vector<float> b, d, u;
      std::vector<uint32_t> rk;
    };
    chunks_per_thread(
        chunks, chunks.size() > 1 && range.size() * N >= kL1ThreadsMin,
        [&] {
          return L1Sums{std::vector<ExactSum>(N, ExactSum(1)),
                        std::vector<ExactSum>(N, ExactSum(1)),
                        std::vector<float>(cap),
                        std::vector<float>(cap),
                        std::vector<float>(cap),
                        std::vector<uint32_t>(cap, 0)};
        },
        [&](L1Sums& t, ElementRange c) {
          decode(s.dtype, s.base, c.begin, c.size(), t.b.data());
          for (size_t i = 0; i < N; ++i) {
            if (!k.pruned[i]) continue;
            decode_delta(s, i, c, t.b.data(), t.d.data());
            if (k.ranks) k.ranks(c, i, t.d.data(), t.rk.data());
            // The kernel's dare_uniform of each element, then in its place the
            // survivor or +0 (which adds nothing), by a mask: no branch.
            dare_uniforms(seed_key, static_cast<uint32_t>(i), c.begin, c.size(), t.u.data());
            const uint64_t row_len = k.row_len;
            const float low = k.low[i], eps = k.eps[i];
            const float* const d = t.d.data();
            const uint32_t* const rk = t.rk.data();
            float* const u = t.u.data();
            for (uint64_t j = 0; j < c.size(); ++j) {
              u[j] = ops::or_zero(d[j], u[j] < ops::della_prob(rk[j], row_len, low, eps));
            }
            t.before[i].add(std::span<const float>(d, c.size()));
            t.after[i].add(std::span<const float>(u, c.size()));
          }
        },
        [&](L1Sums& t) {
          for (size_t i = 0; i < N; ++i) {
            before[i].merge(t.before[i]);
            after[i].merge(t.after[i]);
          }
        });
    for (size_t i = 0; i < N; ++i) {
      if (!k.pruned[i]) continue;
      before[i].allreduce(comm);
      after[i].allreduce(comm);
      // mergekit: masked * (before / after) in fp32, unless either is below 1e-7.
      const auto bs = static_cast<float>(before[i].value());
      const auto as = static_cast<float>(after[i].value());
      if (!(bs < 1e-7f || as < 1e-7f)) scale[i] = ops::div(bs, as);
    }
  }
  stats.l1_scale = scale;
  TaskMergeArgs a;
  a.in_dtype = s.dtype;
  a.weights = m.weights;
  a.lambda = static_cast<float>(m.lambda);
  a.normalize = m.normalize;
  a.sign_consensus = m.method == MergeMethod::Della || m.method == MergeMethod::DareTies ||
                     m.method == MergeMethod::Ties || m.method == MergeMethod::BreadcrumbsTies;
  a.out_dtype = out_dtype;
  a.sparsify = Sparsify::Ranked;
  a.seed_key = seed_key;
  a.row_len = k.row_len;
  a.ranked_low = k.low;
  a.ranked_eps = k.eps;
  a.ranked_scale = scale;
  std::vector<uint32_t> ranks(N * cap, 0);
  std::vector<float> base(k.needs_delta ? cap : 0);
  fused_chunks(a, s.models, s.base, s.dtype, chunks, out_dtype, sink,
               [&](TaskMergeArgs& args, ElementRange c) {
                 // Each model's ranks, the models split among threads.
                 if (k.ranks) {
                   if (k.needs_delta) decode(s.dtype, s.base, c.begin, c.size(), base.data());
#pragma omp parallel if (N > 1 && c.size() * N >= kThreadsMin)
                   {
                     std::vector<float> d(k.needs_delta ? c.size() : 0);
#pragma omp for schedule(dynamic)
                     for (int64_t ii = 0; ii < ni; ++ii) {
                       const auto i = static_cast<size_t>(ii);
                       if (!k.pruned[i]) continue;
                       if (k.needs_delta) decode_delta(s, i, c, base.data(), d.data());
                       k.ranks(c, i, d.data(), ranks.data() + i * c.size());
                     }
                   }
                 }
                 args.ranks = std::span<const uint32_t>(ranks.data(), N * c.size());
                 fused_task_merge(args);
               });
  return stats;
}

// mergekit's della / della_linear (della_magprune): per task vector, each
// entry kept with a probability from density - epsilon (smallest |delta| of
// its row) to density + epsilon (largest); survivors L1-rescaled (rescale),
// then combined as TIES (della) or task arithmetic (della_linear).
MergeTensorStats della_merge(const TensorSources& s, const TensorMethod& m, ElementRange range,
                             DType out_dtype, uint64_t chunk_elems, MPI_Comm comm,
                             const ChunkSink& sink) {
  const size_t N = s.models.size();
  // Rows: the last dimension, as mergekit ranks a 2-D tensor (a 1-D or 0-D
  // tensor is one row).
  const uint64_t L =
      std::max<uint64_t>(s.shape.empty() ? s.numel : static_cast<uint64_t>(s.shape.back()), 1);
  if (L > 0xffffffffull)
    throw_input("tensor {}: della ranks rows of at most 2^32 - 1 elements, this one has {}", s.name,
                L);
  // Per model: fp32(density - epsilon), epsilon, and whether ranks matter.
  // density >= 1 keeps everything as it is, density <= 0 nothing.
  KeepRule k;
  k.row_len = k.chunk_row = L;
  k.low.assign(N, 0.0f);
  k.eps.assign(N, 0.0f);
  k.pruned.assign(N, 0);
  std::vector<char> ranked(N, 0);
  for (size_t i = 0; i < N; ++i) {
    const double d = m.density[i], e = m.epsilon[i];
    if (d >= 1.0) {
      k.low[i] = 2.0f;  // above any uniform in [0, 1)
    } else if (d <= 0.0) {
      k.low[i] = 0.0f;  // below every one
    } else {
      k.low[i] = static_cast<float>(d - e);
      k.eps[i] = static_cast<float>(e);
      k.pruned[i] = 1;
      ranked[i] = k.eps[i] != 0.0f;
    }
  }
  k.ranks = [&](ElementRange c, size_t i, const float*, uint32_t* out) {
    if (ranked[i])
      della_ranks(s, i, c, L, out);
    else
      std::fill(out, out + c.size(), 0u);  // epsilon 0: p = density whatever the rank
  };
  return rescaled_merge(s, m, k, range, out_dtype, chunk_elems, comm, sink);
}

// mergekit's dare_linear / dare_ties (sparsify.bernoulli): each entry kept
// with probability density; survivors L1-rescaled (rescale, the default).
MergeTensorStats dare_merge(const TensorSources& s, const TensorMethod& m, ElementRange range,
                            DType out_dtype, uint64_t chunk_elems, MPI_Comm comm,
                            const ChunkSink& sink) {
  const size_t N = s.models.size();
  KeepRule k;
  k.low.assign(N, 0.0f);
  k.eps.assign(N, 0.0f);
  k.pruned.assign(N, 0);
  for (size_t i = 0; i < N; ++i) {
    const double d = m.density[i];
    k.low[i] = d >= 1.0 ? 2.0f : d <= 0.0 ? 0.0f : static_cast<float>(d);
    k.pruned[i] = d > 0.0 && d < 1.0;
  }
  return rescaled_merge(s, m, k, range, out_dtype, chunk_elems, comm, sink);
}

// mergekit's sce: optionally keep only the select_topk fraction of entries
// (among those of nonzero variance) whose variance across the task vectors is
// largest; weight each task vector by its mean square (normalized to sum 1);
// erase entries against the elected sign; weighted mean of the rest.
MergeTensorStats sce_merge(const TensorSources& s, const TensorMethod& m, ElementRange range,
                           DType out_dtype, uint64_t chunk_elems, MPI_Comm comm,
                           const ChunkSink& sink) {
  MergeTensorStats stats;
  const size_t N = s.models.size();
  const uint64_t cap = std::min<uint64_t>(chunk_elems, range.size());
  SceVariance variance(s, cap);
  std::vector<uint32_t> vkeys(cap);
  // The passes of counts and exact sums split their chunks among threads from
  // about a million element-models (any order gives the same totals).
  const bool threads_pay = range.size() * N >= kParallelKeysMin;
  SceMergeArgs a;
  a.in_dtype = s.dtype;
  a.out_dtype = out_dtype;
  a.thr_bits = 0;
  a.tie_cutoff = std::numeric_limits<uint64_t>::max();  // all
  stats.sce_selected = s.numel;
  if (m.select_topk < 1.0) {
    a.select = true;
    uint64_t k = 0;
    if (m.select_topk > 0.0) {
      // k = int(count_nonzero(var) * select_topk), a float32 product in mergekit.
      uint64_t nonzero = 0;
      const auto count = [](SceVariance& v, std::vector<uint32_t>& keys, ElementRange c) {
        v(c, 0, keys.data());
        uint64_t n = 0;
        for (uint64_t j = 0; j < c.size(); ++j) n += keys[j] != 0 ? 1 : 0;
        return n;
      };
      struct Count {
        SceVariance v;
        std::vector<uint32_t> keys;
        uint64_t n = 0;
      };
      if (!threaded_chunks(
              range, cap, threads_pay,
              [&](uint64_t sub) {
                return Count{SceVariance(s, sub), std::vector<uint32_t>(sub)};
              },
              [&](Count& t, ElementRange c) { t.n += count(t.v, t.keys, c); },
              [&](Count& t) { nonzero += t.n; }))
        for (const auto& c : chunks_of(range, chunk_elems)) nonzero += count(variance, vkeys, c);
      allreduce_in_place(std::span<uint64_t>(&nonzero, 1), MPI_SUM, comm);
      k = static_cast<uint64_t>(
          ops::mul(static_cast<float>(nonzero), static_cast<float>(m.select_topk)));
    }
    const std::vector<uint64_t> kk{k};
    const TopKSelection sel = topk_by_keys(1, s.numel, kk, range, chunk_elems, comm, variance);
    a.thr_bits = sel.thr_bits[0];
    a.tie_cutoff = sel.tie_cutoff[0];
    stats.sce_selected = std::min(k, s.numel);
  }
  // Weights: the mean square of each (selected) task vector, normalized.
  std::vector<ExactSum> sq(N, ExactSum(2));
  const auto squares = [&](SceVariance& v, std::vector<uint32_t>& keys, std::vector<ExactSum>& sum,
                           ElementRange c) {
    if (a.select)
      v(c, 0, keys.data());  // leaves the base in v.b
    else
      decode(s.dtype, s.base, c.begin, c.size(), v.b.data());
    for (size_t i = 0; i < N; ++i) {
      decode_delta(s, i, c, v.b.data(), v.d.data());
      if (a.select)  // the values not selected become +0, which adds nothing
        for (uint64_t j = 0; j < c.size(); ++j) {
          const uint32_t key = keys[j];
          const bool keep =
              (key > a.thr_bits) | ((key == a.thr_bits) & (c.begin + j < a.tie_cutoff));
          v.d[j] = ops::or_zero(v.d[j], keep);
        }
      sum[i].add(std::span<const float>(v.d.data(), c.size()));
    }
  };
  struct Squares {
    SceVariance v;
    std::vector<uint32_t> keys;
    std::vector<ExactSum> sum;
  };
  if (!threaded_chunks(
          range, cap, threads_pay,
          [&](uint64_t sub) {
            return Squares{SceVariance(s, sub), std::vector<uint32_t>(sub),
                           std::vector<ExactSum>(N, ExactSum(2))};
          },
          [&](Squares& t, ElementRange c) { squares(t.v, t.keys, t.sum, c); },
          [&](Squares& t) {
            for (size_t i = 0; i < N; ++i) sq[i].merge(t.sum[i]);
          }))
    for (const auto& c : chunks_of(range, chunk_elems)) squares(variance, vkeys, sq, c);
  std::vector<float> w(N);
  float wsum = 0.0f;
  for (size_t i = 0; i < N; ++i) {
    sq[i].allreduce(comm);
    // torch.mean(tvs ** 2) in fp32, then the sum of those means.
    w[i] = static_cast<float>(sq[i].value() / static_cast<double>(std::max<uint64_t>(s.numel, 1)));
    wsum = ops::add(wsum, w[i]);
  }
  for (size_t i = 0; i < N; ++i)
    w[i] = std::fabs(static_cast<double>(wsum)) < 1e-6 ? ops::div(1.0f, static_cast<float>(N))
                                                       : ops::div(w[i], wsum);
  stats.sce_weights = w;
  a.weights = w;
  fused_chunks_parallel(a, s.models, s.base, s.dtype, range, chunk_elems, out_dtype, sink,
                        [](SceMergeArgs& args) { fused_sce_merge(args); });
  return stats;
}

}  // namespace

std::array<double, 2> nuslerp_coefficients(double g00, double g01, double g11, double t) {
  // mergekit's _normalize divides by the norm clamped to >= 1e-7.
  const double n0 = std::max(std::sqrt(g00), 1e-7), n1 = std::max(std::sqrt(g11), 1e-7);
  const double cos = std::clamp(g01 / (n0 * n1), -1.0, 1.0);
  const double theta = std::acos(cos);
  const double sin_theta = std::sin(theta);
  if (std::fabs(sin_theta) < 1e-8) return {1.0 - t, t};  // (nearly) colinear: lerp
  return {std::sin((1.0 - t) * theta) / sin_theta, std::sin(t * theta) / sin_theta};
}

namespace {

// x^T Q x for a symmetric n x n matrix Q (row-major), in a fixed order:
// sum over i of x_i * (sum over j of Q_ij x_j); a rounding below zero is 0.
double quad(std::span<const double> q, std::span<const double> x) {
  const size_t n = x.size();
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) {
    double r = 0.0;
    for (size_t j = 0; j < n; ++j) r += q[i * n + j] * x[j];
    s += x[i] * r;
  }
  return std::max(s, 0.0);
}

}  // namespace

std::optional<std::vector<double>> multislerp_coefficients(std::span<const double> gram,
                                                           std::span<const double> w, double eps) {
  // Every vector of mergekit's multislerp lies in the span of the inputs x_i:
  // it is carried as its coefficients on the unit vectors u_i = x_i / (|x_i| + eps),
  // whose Gram matrix is U_ij = G_ij / ((|x_i| + eps)(|x_j| + eps)).
  const size_t n = w.size();
  std::vector<double> norm(n), u(n * n);
  for (size_t i = 0; i < n; ++i) norm[i] = std::sqrt(gram[i * n + i]);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j)
      u[i * n + j] = gram[i * n + j] / ((norm[i] + eps) * (norm[j] + eps));
  // mean = sum_i w_i u_i, normalized
  const double mean_norm = std::sqrt(quad(u, w));
  if (mean_norm < eps) return std::nullopt;
  std::vector<double> alpha(n);
  for (size_t i = 0; i < n; ++i) alpha[i] = w[i] / mean_norm;
  // dots_i = u_i . mean; tangent = sum_i w_i (u_i - dots_i mean)
  double wdots = 0.0;
  for (size_t i = 0; i < n; ++i) {
    double d = 0.0;
    for (size_t j = 0; j < n; ++j) d += u[i * n + j] * alpha[j];
    wdots += w[i] * d;
  }
  std::vector<double> beta(n);
  for (size_t k = 0; k < n; ++k) beta[k] = w[k] - wdots * alpha[k];
  // Exponential map back to the sphere, then the weighted mean norm.
  const double tangent_norm = std::sqrt(quad(u, beta)) + eps;
  const double c = std::cos(tangent_norm), sn = std::sin(tangent_norm) / tangent_norm;
  double avg_norm = 0.0;
  for (size_t i = 0; i < n; ++i) avg_norm += norm[i] * w[i];
  std::vector<double> coef(n);
  for (size_t k = 0; k < n; ++k)
    coef[k] = (alpha[k] * c + beta[k] * sn) * avg_norm / (norm[k] + eps);
  return coef;
}

std::vector<double> karcher_coefficients(std::span<const double> gram, int64_t max_iter, double tol,
                                         int64_t* iterations) {
  // mergekit's karcher_merge_tensors with alphas 1/N, on the span of the
  // inputs: the mean is carried as its coefficients g on the unit vectors
  // x_i / |x_i| of the inputs whose norm exceeds tol (the valid ones).
  size_t n = 0;
  while (n * n < gram.size()) ++n;
  const double alpha = 1.0 / static_cast<double>(n);
  std::vector<double> norm(n);
  std::vector<size_t> valid;
  for (size_t i = 0; i < n; ++i) {
    norm[i] = std::sqrt(gram[i * n + i]);
    if (norm[i] > tol) valid.push_back(i);
  }
  if (iterations) *iterations = 0;
  std::vector<double> coef(n, 0.0);
  if (valid.empty()) return coef;  // zeros
  const size_t v = valid.size();
  double alpha_sum = 0.0;
  for (size_t k = 0; k < v; ++k) alpha_sum += alpha;
  const double a = alpha / alpha_sum;  // the normalized alphas, all equal
  std::vector<double> unit(v * v);
  for (size_t p = 0; p < v; ++p)
    for (size_t q = 0; q < v; ++q)
      unit[p * v + q] = gram[valid[p] * n + valid[q]] / (norm[valid[p]] * norm[valid[q]]);
  // Initial guess: the normalized weighted arithmetic mean of the units.
  std::vector<double> g(v, a), tangent(v);
  const double norm_g = std::sqrt(quad(unit, g));
  if (norm_g < tol) {
    std::fill(g.begin(), g.end(), 0.0);
    g[0] = 1.0;
  } else {
    for (double& x : g) x /= norm_g;
  }
  for (int64_t it = 0; it < max_iter; ++it) {
    std::fill(tangent.begin(), tangent.end(), 0.0);
    for (size_t p = 0; p < v; ++p) {
      double dot = 0.0;
      for (size_t q = 0; q < v; ++q) dot += g[q] * unit[q * v + p];
      dot = std::clamp(dot, -1.0, 1.0);
      const double theta = std::acos(dot);
      if (theta < tol) continue;
      // tangent += a (theta / sin theta) (unit_p - dot * mean)
      const double k = a * (theta / std::sin(theta));
      for (size_t q = 0; q < v; ++q) tangent[q] -= k * (dot * g[q]);
      tangent[p] += k;
    }
    const double norm_t = std::sqrt(quad(unit, tangent));
    if (norm_t < tol) break;
    const double c = std::cos(norm_t), sn = std::sin(norm_t);
    for (size_t q = 0; q < v; ++q) g[q] = c * g[q] + sn * (tangent[q] / norm_t);
    const double norm_u = std::sqrt(quad(unit, g));
    if (norm_u > tol)
      for (double& x : g) x /= norm_u;
    if (iterations) ++*iterations;
  }
  // The global scale: the alphas' weighted sum of all the norms (zeros included).
  double scale = 0.0;
  for (size_t i = 0; i < n; ++i) scale += alpha * norm[i];
  for (size_t p = 0; p < v; ++p) coef[valid[p]] = scale * g[p] / norm[valid[p]];
  return coef;
}

namespace {

// out = sum_i w_i x_i (no base), or base + sum_i w_i (x_i - base), over this
// rank's range in chunks: the fused kernels' operations (tensor_merge.hpp).
void combine_chunks(const TensorSources& s, std::span<const void* const> inputs, const void* base,
                    const std::vector<double>& coef, ElementRange range, DType out_dtype,
                    uint64_t chunk_elems, const ChunkSink& sink) {
  std::vector<float> w(coef.size());
  for (size_t i = 0; i < coef.size(); ++i) w[i] = static_cast<float>(coef[i]);
  if (base == nullptr) {
    weighted_sum_chunks({inputs.begin(), inputs.end()}, s.dtype, w, range, out_dtype, chunk_elems,
                        sink);
    return;
  }
  TaskMergeArgs a;
  a.in_dtype = s.dtype;
  a.out_dtype = out_dtype;
  a.weights = w;  // no sparsification, no normalization, lambda 1
  fused_chunks_parallel(a, inputs, base, s.dtype, range, chunk_elems, out_dtype, sink,
                        [](TaskMergeArgs& args) { fused_task_merge(args); });
}

// The two vectors of nuslerp over elements [c.begin, c.end): the models, or
// their task vectors when there is a base.
struct NuslerpReader {
  const TensorSources& s;
  std::vector<float> base, v0, v1;
  ElementRange last{1, 0};  // what the buffers hold (none yet)
  NuslerpReader(const TensorSources& src, uint64_t cap) : s(src), base(cap), v0(cap), v1(cap) {}
  void read(ElementRange c) {
    if (c.begin == last.begin && c.end == last.end) return;
    last = c;
    decode(s.dtype, s.models[0], c.begin, c.size(), v0.data());
    decode(s.dtype, s.models[1], c.begin, c.size(), v1.data());
    if (s.base == nullptr) return;
    decode(s.dtype, s.base, c.begin, c.size(), base.data());
    for (uint64_t k = 0; k < c.size(); ++k) {
      v0[k] = ops::sub(v0[k], base[k]);
      v1[k] = ops::sub(v1[k], base[k]);
    }
  }
};

// nuslerp's Gram entries (g00, g01, g11) of elements `row` of the tensor,
// read whole by this rank whatever its range (pieces of the reader's size).
std::array<double, 3> row_gram(NuslerpReader& r, ElementRange row, int& bad) {
  const uint64_t cap = r.v0.size();
  float m = 0.0f;
  const bool one_piece = row.size() <= cap;
  for (const auto& c : chunks_of(row, cap)) {
    r.read(c);
    m = max_magnitude(r.v0.data(), c.size(), m, bad);
    m = max_magnitude(r.v1.data(), c.size(), m, bad);
  }
  if (m == 0.0f || bad) return {0.0, 0.0, 0.0};
  const double scale = gram_scale(m);
  i128 acc[3] = {0, 0, 0};
  for (const auto& c : chunks_of(row, cap)) {
    if (!one_piece) r.read(c);
    acc[0] += fixed_dot(r.v0.data(), r.v0.data(), c.size(), scale);
    acc[1] += fixed_dot(r.v0.data(), r.v1.data(), c.size(), scale);
    acc[2] += fixed_dot(r.v1.data(), r.v1.data(), c.size(), scale);
  }
  return {static_cast<double>(acc[0]) / scale, static_cast<double>(acc[1]) / scale,
          static_cast<double>(acc[2]) / scale};
}

void merge_nuslerp(const TensorSources& s, const TensorMethod& m, ElementRange range,
                   DType out_dtype, uint64_t chunk_elems, MPI_Comm comm, const ChunkSink& sink,
                   MergeTensorStats& stats) {
  KS_CHECK(s.models.size() == 2, "nuslerp merges two models");
  const uint64_t numel = s.numel;
  if (numel == 0) return;
  // Which vectors: the whole tensor, its rows (along the last dimension), or
  // (row_wise, mergekit's dim 0) the vectors along dimension 0, i.e. the
  // columns of the [shape[0], numel / shape[0]] view.
  uint64_t segment = numel;
  bool by_column = false;
  if (!m.flatten && s.shape.size() >= 2) {
    by_column = m.row_wise;
    segment = by_column ? numel / static_cast<uint64_t>(s.shape[0])
                        : static_cast<uint64_t>(s.shape.back());
  }
  const bool whole = by_column ? segment == 1 : segment == numel;
  if (whole) {
    NuslerpReader r(s, std::min<uint64_t>(chunk_elems, std::max<uint64_t>(range.size(), 1)));
    const auto gram =
        exact_gram(2, range, chunk_elems, comm, s.name, [&](size_t a, ElementRange c, float* out) {
          r.read(c);
          std::memcpy(out, (a == 0 ? r.v0 : r.v1).data(), c.size() * 4);
        });
    const auto ab = nuslerp_coefficients(gram[0], gram[1], gram[3], m.t);
    stats.coefficients = {ab[0], ab[1]};
    combine_chunks(s, s.models, s.base, stats.coefficients, range, out_dtype, chunk_elems, sink);
    return;
  }
  // Per vector: weights table for the kernel, two per vector.
  std::vector<float> table;
  VectorMergeArgs a;
  a.in_dtype = s.dtype;
  a.out_dtype = out_dtype;
  a.segment = segment;
  a.by_column = by_column;
  int bad = 0;
  auto put = [&](size_t v, const std::array<double, 3>& g) {
    const auto ab = nuslerp_coefficients(g[0], g[1], g[2], m.t);
    table[2 * v] = static_cast<float>(ab[0]);
    table[2 * v + 1] = static_cast<float>(ab[1]);
  };
  if (by_column) {
    // Columns cross every rank's range: per-column largest magnitudes
    // (MPI_MAX), then per-column 128-bit fixed-point sums (exact), on all ranks.
    const uint64_t cols = segment;
    NuslerpReader r(s, std::min<uint64_t>(chunk_elems, std::max<uint64_t>(range.size(), 1)));
    std::vector<float> cmax(cols, 0.0f);
    for (const auto& c : chunks_of(range, chunk_elems)) {
      r.read(c);
      uint64_t col = c.begin % cols;
      for (uint64_t k = 0; k < c.size(); ++k) {
        const float x = std::fabs(r.v0[k]), y = std::fabs(r.v1[k]);
        if (!std::isfinite(x) || !std::isfinite(y)) bad = 1;
        cmax[col] = std::max(cmax[col], std::max(x, y));
        if (++col == cols) col = 0;
      }
    }
    allreduce_in_place(std::span(cmax), MPI_MAX, comm);
    allreduce_in_place(std::span<int>(&bad, 1), MPI_MAX, comm);
    if (bad) throw_input("tensor {}: non-finite values in the inputs", s.name);
    std::vector<double> scale(cols, 0.0);
    for (uint64_t col = 0; col < cols; ++col)
      if (cmax[col] > 0.0f) scale[col] = gram_scale(cmax[col]);
    std::vector<i128> acc(3 * cols, 0);
    for (const auto& c : chunks_of(range, chunk_elems)) {
      r.read(c);
      uint64_t col = c.begin % cols;
      for (uint64_t k = 0; k < c.size(); ++k) {
        const double x = static_cast<double>(r.v0[k]), y = static_cast<double>(r.v1[k]);
        const double sc = scale[col];
        acc[3 * col] += static_cast<int64_t>(x * x * sc);
        acc[3 * col + 1] += static_cast<int64_t>(x * y * sc);
        acc[3 * col + 2] += static_cast<int64_t>(y * y * sc);
        if (++col == cols) col = 0;
      }
    }
    allreduce_sum_i128(std::span(acc), comm);
    table.assign(2 * cols, 0.0f);
    for (uint64_t col = 0; col < cols; ++col) {
      std::array<double, 3> g = {0.0, 0.0, 0.0};
      if (scale[col] != 0.0)
        for (int e = 0; e < 3; ++e) g[e] = static_cast<double>(acc[3 * col + e]) / scale[col];
      put(col, g);
    }
    a.first_vector = 0;
    a.weights = table;
  }
  // Rows: each rank reads every row its range touches whole (the sources
  // address the whole tensor), so a row's statistics need no collective and
  // are the same on every rank that touches it.
  std::optional<NuslerpReader> rr;
  if (!by_column) rr.emplace(s, std::min(chunk_elems, segment));
  uint64_t cached_row = std::numeric_limits<uint64_t>::max();
  std::array<double, 3> cached{};
  const std::vector<const void*> two(s.models.begin(), s.models.begin() + 2);
  fused_chunks(
      a, two, s.base, s.dtype, chunks_of(range, chunk_elems), out_dtype, sink,
      [&](VectorMergeArgs& args, ElementRange c) {
        if (!by_column) {
          const uint64_t r0 = c.begin / segment, r1 = (c.end - 1) / segment;
          table.assign(2 * (r1 - r0 + 1), 0.0f);
          for (uint64_t row = r0; row <= r1; ++row) {
            if (row != cached_row) {
              cached = row_gram(*rr, {row * segment, std::min(numel, (row + 1) * segment)}, bad);
              cached_row = row;
            }
            put(row - r0, cached);
          }
          args.first_vector = r0;
          args.weights = table;
        }
        fused_vector_merge(args);
      });
  if (!by_column) {
    // A non-finite value fails the merge on every rank (it was found by the
    // ranks whose rows hold it).
    allreduce_in_place(std::span<int>(&bad, 1), MPI_MAX, comm);
    if (bad) throw_input("tensor {}: non-finite values in the inputs", s.name);
  }
}

// mergekit's ram and ramplus_tl: an entry of a task vector counts when
// |delta| > epsilon; an entry only one model changes is taken as it is
// (ramplus_tl: scaled by that model's lambda), one several models change is
// their mean. ramplus_tl's lambda_i = 1 + r * clamp(rho_i, 0, alpha), with
// rho_i = shared_i / max(unique_i, epsilon) from whole-tensor counts of model
// i's entries that count together with another model's (shared) or alone
// (unique): integers summed over the ranks, so exact for any split.
MergeTensorStats ram_merge_tensor(const TensorSources& s, const TensorMethod& m, ElementRange range,
                                  DType out_dtype, uint64_t chunk_elems, MPI_Comm comm,
                                  const ChunkSink& sink) {
  MergeTensorStats stats;
  const size_t N = s.models.size();
  const auto eps = static_cast<float>(m.ram_epsilon);
  const uint64_t cap = std::min<uint64_t>(chunk_elems, range.size());
  std::vector<float> lambda;
  if (m.method == MergeMethod::RamplusTl) {
    std::vector<float> b(cap), d(cap);
    std::vector<uint32_t> cnt(cap);
    std::vector<uint64_t> counts(2 * N, 0);  // shared_i at i, unique_i at N + i
    for (const auto& c : chunks_of(range, chunk_elems)) {
      decode(s.dtype, s.base, c.begin, c.size(), b.data());
      std::fill_n(cnt.begin(), c.size(), 0u);
      for (size_t i = 0; i < N; ++i) {
        decode_delta(s, i, c, b.data(), d.data());
        for (uint64_t j = 0; j < c.size(); ++j) cnt[j] += ops::ram_counts(d[j], eps) ? 1u : 0u;
      }
      for (size_t i = 0; i < N; ++i) {
        decode_delta(s, i, c, b.data(), d.data());
        for (uint64_t j = 0; j < c.size(); ++j)
          if (ops::ram_counts(d[j], eps)) ++counts[(cnt[j] == 1 ? N : 0) + i];
      }
    }
    allreduce_in_place(std::span(counts), MPI_SUM, comm);
    // In fp32 as mergekit's tensors: the counts converted to fp32, the unique
    // count clamped below at epsilon, clamp propagating NaN (0 / 0 with epsilon 0).
    const auto r = static_cast<float>(m.ram_r);
    const auto alpha = static_cast<float>(m.ram_alpha);
    for (size_t i = 0; i < N; ++i) {
      const float rho =
          ops::div(static_cast<float>(counts[i]), std::max(static_cast<float>(counts[N + i]), eps));
      const float cl = rho != rho ? rho : std::min(std::max(rho, 0.0f), alpha);
      lambda.push_back(ops::add(1.0f, ops::mul(r, cl)));
      stats.ram_shared.push_back(counts[i]);
      stats.ram_unique.push_back(counts[N + i]);
    }
    stats.ram_lambda = lambda;
  }
  RamMergeArgs a;
  a.in_dtype = s.dtype;
  a.out_dtype = out_dtype;
  a.epsilon = eps;
  a.lambda = lambda;
  const size_t isz = elem_size(s.dtype), osz = elem_size(out_dtype);
  std::vector<std::byte> out(cap * osz);
  std::vector<const void*> ptrs(N);
  for (const auto& c : chunks_of(range, chunk_elems)) {
    for (size_t i = 0; i < N; ++i) ptrs[i] = static_cast<const char*>(s.models[i]) + c.begin * isz;
    a.inputs = ptrs;
    a.base = static_cast<const char*>(s.base) + c.begin * isz;
    a.out = out.data();
    a.n = c.size();
    fused_ram_merge(a);
    sink(c, std::span<const std::byte>(out.data(), c.size() * osz));
  }
  return stats;
}

// The divergences of arcee_fusion's rows, each computed from the whole row
// (also outside the rank's range), so every rank that touches a row gets the
// same value without a collective. Kept for all the rows of the range when
// they are no more than a chunk's elements, else only the last row's.
class FusionRows {
 public:
  FusionRows(const TensorSources& src, uint64_t row_len, ElementRange range, uint64_t chunk_elems)
      : s_(src), L_(row_len), x_(row_len), b_(row_len) {
    if (range.empty()) return;
    first_ = range.begin / L_;
    const uint64_t rows = (range.end - 1) / L_ - first_ + 1;
    if (rows <= chunk_elems) {
      table_.assign(rows, 0.0f);
      done_.assign(rows, 0);
    }
  }
  float kl(uint64_t row) {
    if (!table_.empty()) {
      const auto k = static_cast<size_t>(row - first_);
      if (!done_[k]) {
        table_[k] = compute(row);
        done_[k] = 1;
      }
      return table_[k];
    }
    if (row != last_row_) {
      last_ = compute(row);
      last_row_ = row;
    }
    return last_;
  }

 private:
  float compute(uint64_t row) {
    decode(s_.dtype, s_.models[0], row * L_, L_, x_.data());
    decode(s_.dtype, s_.base, row * L_, L_, b_.data());
    return static_cast<float>(fusion_row_divergence(x_.data(), b_.data(), L_));
  }
  const TensorSources& s_;
  uint64_t L_;
  std::vector<float> x_, b_;
  uint64_t first_ = 0;
  std::vector<float> table_;
  std::vector<char> done_;
  uint64_t last_row_ = std::numeric_limits<uint64_t>::max();
  float last_ = 0.0f;
};

// Importance as a key whose unsigned order is descending importance (the
// order topk_by_keys selects the largest of): NaN made the positive quiet NaN
// (sorted last, as torch.sort does), -0 made +0, then the IEEE total order
// reversed.
inline uint32_t fusion_desc_key(float v) {
  v = ops::add(ops::canonical_nan(v), 0.0f);
  const uint32_t u = ops::f32_bits(v);
  const uint32_t asc = (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
  return ~asc;
}
inline float fusion_key_value(uint32_t desc) {
  const uint32_t asc = ~desc;
  return ops::bits_f32((asc & 0x80000000u) != 0 ? (asc & 0x7fffffffu) : ~asc);
}

// The importance keys of a chunk, computed once per chunk for the three
// quantiles' selections.
struct FusionKeys {
  const TensorSources& s;
  FusionRows& rows;
  uint64_t L;
  std::vector<float> b, d;
  std::vector<uint32_t> k;
  uint64_t done = std::numeric_limits<uint64_t>::max();
  FusionKeys(const TensorSources& src, FusionRows& r, uint64_t row_len, uint64_t cap)
      : s(src), rows(r), L(row_len), b(cap), d(cap), k(cap) {}
  void operator()(ElementRange c, size_t, uint32_t* keys) {
    if (done != c.begin) {
      decode(s.dtype, s.base, c.begin, c.size(), b.data());
      decode_delta(s, 0, c, b.data(), d.data());
      for (uint64_t j = 0; j < c.size(); ++j)
        k[j] = fusion_desc_key(ops::fusion_importance(d[j], rows.kl((c.begin + j) / L)));
      done = c.begin;
    }
    std::copy_n(k.begin(), c.size(), keys);
  }
};

// mergekit's cabs: each chunk widened to whole superblocks (the least common
// multiple of the models' block sizes, at multiples of it from the tensor's
// start), merged whole, and the chunk's part written. A superblock that
// straddles two chunks or two ranks is computed by both, from the same
// inputs: the same bytes for any split.
MergeTensorStats cabs_merge_tensor(const TensorSources& s, const TensorMethod& m,
                                   ElementRange range, DType out_dtype, uint64_t chunk_elems,
                                   const ChunkSink& sink) {
  MergeTensorStats stats;
  const size_t N = s.models.size();
  KS_CHECK(
      m.order.size() == N && m.keep_n.size() == N && m.block_m.size() == N && m.weights.size() == N,
      "cabs: an order, n:m and weight per model");
  const uint64_t L = cabs_superblock(m.block_m);
  std::vector<const void*> in(N);
  const size_t isz = elem_size(s.dtype), osz = elem_size(out_dtype);
  std::vector<std::byte> out;
  for (const auto& c : chunks_of(range, chunk_elems)) {
    const uint64_t r0 = c.begin / L * L;
    const uint64_t r1 = std::min(s.numel, (c.end + L - 1) / L * L);
    for (size_t k = 0; k < N; ++k)
      in[k] = static_cast<const char*>(s.models[m.order[k]]) + r0 * isz;
    out.resize((r1 - r0) * osz);
    CabsMergeArgs a;
    a.inputs = in;
    a.base = static_cast<const char*>(s.base) + r0 * isz;
    a.in_dtype = s.dtype;
    a.weights = m.weights;
    a.keep_n = m.keep_n;
    a.block_m = m.block_m;
    a.out = out.data();
    a.out_dtype = out_dtype;
    a.n = r1 - r0;
    fused_cabs_merge(a);
    sink(c, std::span<const std::byte>(out.data() + (c.begin - r0) * osz, c.size() * osz));
  }
  return stats;
}

// mergekit's arcee_fusion: importance = |delta| * KL(softmax(model row) +
// 1e-8 || softmax(base row) + 1e-8); the entries whose importance reaches
// median + 1.5 (q3 - q1) take the model's value, the others keep the base's.
// Quantile q is the entry at index floor(q (numel - 1)) of the importances
// sorted ascending, found exactly by the radix select over all entries.
MergeTensorStats fusion_merge_tensor(const TensorSources& s, ElementRange range, DType out_dtype,
                                     uint64_t chunk_elems, MPI_Comm comm, const ChunkSink& sink) {
  MergeTensorStats stats;
  const uint64_t numel = s.numel;
  if (numel == 0) return stats;
  const uint64_t L = s.shape.empty() ? numel : static_cast<uint64_t>(s.shape.back());
  const uint64_t cap = std::min<uint64_t>(chunk_elems, range.size());
  FusionRows rows(s, L, range, chunk_elems);
  FusionKeys keys(s, rows, L, cap);
  std::array<float, 3> q{};
  if (numel == 1) {
    // One entry: every quantile is it (the rank that holds it tells the others).
    uint64_t key = 0;
    if (!range.empty()) {
      uint32_t k1 = 0;
      keys(range, 0, &k1);
      key = uint64_t{1} + k1;
    }
    allreduce_in_place(std::span<uint64_t>(&key, 1), MPI_MAX, comm);
    q.fill(fusion_key_value(static_cast<uint32_t>(key - 1)));
  } else {
    // The entry at ascending index p is the (p + 1)-th largest in descending keys.
    const uint64_t last = numel - 1;
    const std::vector<uint64_t> kk{last / 4 + 1, last / 2 + 1,
                                   last / 4 * 3 + (last % 4) * 3 / 4 + 1};
    const TopKSelection sel = topk_by_keys(3, numel, kk, range, chunk_elems, comm, keys);
    for (size_t i = 0; i < 3; ++i) q[i] = fusion_key_value(sel.thr_bits[i]);
  }
  // torch: median + 1.5 * (q3 - q1), in fp32.
  const float thr = ops::add(q[1], ops::mul(1.5f, ops::sub(q[2], q[0])));
  stats.fusion_q1 = q[0];
  stats.fusion_median = q[1];
  stats.fusion_q3 = q[2];
  stats.fusion_threshold = thr;
  FusionMergeArgs a;
  a.in_dtype = s.dtype;
  a.out_dtype = out_dtype;
  a.row_len = L;
  a.threshold = thr;
  const size_t isz = elem_size(s.dtype), osz = elem_size(out_dtype);
  std::vector<std::byte> out(cap * osz);
  std::vector<float> table;
  for (const auto& c : chunks_of(range, chunk_elems)) {
    const uint64_t r0 = c.begin / L, r1 = (c.end - 1) / L;
    table.resize(r1 - r0 + 1);
    for (uint64_t row = r0; row <= r1; ++row) table[row - r0] = rows.kl(row);
    a.kl_rows = table;
    a.first_row = r0;
    a.first_index = c.begin;
    a.base = static_cast<const char*>(s.base) + c.begin * isz;
    a.model = static_cast<const char*>(s.models[0]) + c.begin * isz;
    a.out = out.data();
    a.n = c.size();
    fused_fusion_merge(a);
    sink(c, std::span<const std::byte>(out.data(), c.size() * osz));
  }
  return stats;
}

}  // namespace

MergeTensorStats merge_tensor(const TensorSources& s, const TensorMethod& m, ElementRange range,
                              DType out_dtype, uint64_t chunk_elems, MPI_Comm comm,
                              const ChunkSink& sink) {
  MergeTensorStats stats;
  const size_t N = s.models.size();
  KS_CHECK(N >= 1, "at least one model");
  switch (m.method) {
    case MergeMethod::Linear:
      weighted_sum_chunks(s.models, s.dtype, m.weights, range, out_dtype, chunk_elems, sink);
      return stats;
    case MergeMethod::ModelStock:
    case MergeMethod::Slerp: {
      const bool stock = m.method == MergeMethod::ModelStock;
      const size_t nv = stock ? N : 2;
      std::vector<float> base_buf(std::min<uint64_t>(chunk_elems, range.size()));
      const auto gram = exact_gram(
          nv, range, chunk_elems, comm, s.name, [&](size_t a, ElementRange c, float* out) {
            if (!stock) {
              decode(s.dtype, a == 0 ? s.base : s.models[0], c.begin, c.size(), out);
              return;
            }
            decode(s.dtype, s.base, c.begin, c.size(), base_buf.data());
            decode_delta(s, a, c, base_buf.data(), out);
          });
      std::vector<const void*> inputs{s.base};
      std::vector<float> w;
      if (stock) {
        // Jang et al. 2024 as mergekit computes it: the mean pairwise cosine of
        // the task vectors, t = k cos / (1 + (k - 1) cos), theta = t avg + (1 - t) base.
        double cos_sum = 0;
        size_t pairs = 0;
        for (size_t a = 0; a < N; ++a)
          for (size_t b = a + 1; b < N; ++b) {
            const double np = std::sqrt(gram[a * N + a]) * std::sqrt(gram[b * N + b]);
            cos_sum += std::clamp(gram[a * N + b] / std::max(np, 1e-6), -1.0, 1.0);
            ++pairs;
          }
        const double cos = cos_sum / static_cast<double>(pairs);
        const double k = static_cast<double>(N);
        const double den = 1.0 + (k - 1.0) * cos;
        const double t = std::fabs(den) < 1e-12 ? 0.0 : k * cos / den;
        stats.model_stock_t = t;
        w.push_back(static_cast<float>(1.0 - t));
        for (size_t i = 0; i < N; ++i) {
          inputs.push_back(s.models[i]);
          w.push_back(static_cast<float>(t / k));
        }
      } else {
        // mergekit's slerp: directions normalized when their norm exceeds 1e-8,
        // plain lerp when they are nearly colinear (|cos| > 0.9995).
        const double n0 = std::sqrt(gram[0]), n1 = std::sqrt(gram[3]);
        const double dot = gram[1] / ((n0 > 1e-8 ? n0 : 1.0) * (n1 > 1e-8 ? n1 : 1.0));
        stats.slerp_dot = dot;
        double s0 = 1.0 - m.t, s1 = m.t;
        if (std::fabs(dot) <= 0.9995) {
          const double theta0 = std::acos(dot);
          const double sin0 = std::sin(theta0);
          const double theta_t = theta0 * m.t;
          s0 = std::sin(theta0 - theta_t) / sin0;
          s1 = std::sin(theta_t) / sin0;
        }
        inputs.push_back(s.models[0]);
        w = {static_cast<float>(s0), static_cast<float>(s1)};
      }
      weighted_sum_chunks(inputs, s.dtype, w, range, out_dtype, chunk_elems, sink);
      return stats;
    }
    case MergeMethod::Nuslerp:
      merge_nuslerp(s, m, range, out_dtype, chunk_elems, comm, sink, stats);
      return stats;
    case MergeMethod::Multislerp: {
      if (N == 1) {  // mergekit returns the one model as it is
        stats.coefficients = {1.0};
        combine_chunks(s, s.models, nullptr, stats.coefficients, range, out_dtype, chunk_elems,
                       sink);
        return stats;
      }
      std::vector<float> base_buf(std::min<uint64_t>(chunk_elems, range.size()));
      const auto gram = exact_gram(N, range, chunk_elems, comm, s.name,
                                   [&](size_t a, ElementRange c, float* out) {
                                     if (s.base == nullptr) {
                                       decode(s.dtype, s.models[a], c.begin, c.size(), out);
                                       return;
                                     }
                                     decode(s.dtype, s.base, c.begin, c.size(), base_buf.data());
                                     decode_delta(s, a, c, base_buf.data(), out);
                                   });
      auto coef = multislerp_coefficients(gram, m.sphere_weights, m.eps);
      if (!coef) {
        if (N != 2)
          throw_input(
              "tensor {}: multislerp: the weighted mean of the inputs' directions is zero "
              "(antipodal inputs whose weights balance out); use other weights",
              s.name);
        coef = m.sphere_weights;  // mergekit's fallback for two inputs: linear interpolation
        stats.multislerp_lerp = true;
      }
      stats.coefficients = *coef;
      combine_chunks(s, s.models, s.base, stats.coefficients, range, out_dtype, chunk_elems, sink);
      return stats;
    }
    case MergeMethod::Karcher: {
      // Every input is a point to average, the base (when given) first.
      // (Built in one pass: GCC 12 at -O3 for aarch64 reports a false
      // -Warray-bounds on an insert after a push_back into an empty vector.)
      std::vector<const void*> inputs(s.models.size() + (s.base != nullptr ? 1 : 0));
      if (s.base != nullptr) inputs[0] = s.base;
      std::copy(s.models.begin(), s.models.end(), inputs.end() - std::ssize(s.models));
      const size_t n = inputs.size();
      if (n == 1) {
        stats.coefficients = {1.0};
      } else {
        const auto gram = exact_gram(n, range, chunk_elems, comm, s.name,
                                     [&](size_t a, ElementRange c, float* out) {
                                       decode(s.dtype, inputs[a], c.begin, c.size(), out);
                                     });
        stats.coefficients =
            karcher_coefficients(gram, m.max_iter, m.tol, &stats.karcher_iterations);
      }
      combine_chunks(s, inputs, nullptr, stats.coefficients, range, out_dtype, chunk_elems, sink);
      return stats;
    }
    case MergeMethod::Nearswap: {
      const size_t isz = elem_size(s.dtype), osz = elem_size(out_dtype);
      std::vector<std::byte> out(std::min<uint64_t>(chunk_elems, range.size()) * osz);
      for (const auto& c : chunks_of(range, chunk_elems)) {
        fused_nearswap(static_cast<const char*>(s.base) + c.begin * isz,
                       static_cast<const char*>(s.models[0]) + c.begin * isz, s.dtype,
                       static_cast<float>(m.t), out.data(), out_dtype, c.size());
        sink(c, std::span<const std::byte>(out.data(), c.size() * osz));
      }
      return stats;
    }
    case MergeMethod::Passthrough: {
      // The one model's elements: its bytes as they are when no scale and no
      // dtype change, else round(x * scale) (scale 1 when absent).
      const size_t isz = elem_size(s.dtype), osz = elem_size(out_dtype);
      const auto* x = static_cast<const std::byte*>(s.models[0]);
      if (m.weights.empty() && out_dtype == s.dtype) {
        for (const auto& c : chunks_of(range, chunk_elems))
          sink(c, std::span<const std::byte>(x + c.begin * isz, c.size() * isz));
        return stats;
      }
      const float scale = m.weights.empty() ? 1.0f : m.weights[0];
      std::vector<std::byte> out(std::min<uint64_t>(chunk_elems, range.size()) * osz);
      for (const auto& c : chunks_of(range, chunk_elems)) {
        fused_scale(x + c.begin * isz, s.dtype, scale, out.data(), out_dtype, c.size());
        sink(c, std::span<const std::byte>(out.data(), c.size() * osz));
      }
      return stats;
    }
    case MergeMethod::Sce:
      return sce_merge(s, m, range, out_dtype, chunk_elems, comm, sink);
    case MergeMethod::Ram:
    case MergeMethod::RamplusTl:
      return ram_merge_tensor(s, m, range, out_dtype, chunk_elems, comm, sink);
    case MergeMethod::ArceeFusion:
      return fusion_merge_tensor(s, range, out_dtype, chunk_elems, comm, sink);
    case MergeMethod::Cabs:
      return cabs_merge_tensor(s, m, range, out_dtype, chunk_elems, sink);
    default:
      break;
  }
  if (m.method == MergeMethod::Della || m.method == MergeMethod::DellaLinear)
    return della_merge(s, m, range, out_dtype, chunk_elems, comm, sink);
  if (m.method == MergeMethod::DareLinear || m.method == MergeMethod::DareTies)
    return dare_merge(s, m, range, out_dtype, chunk_elems, comm, sink);
  // The task-vector family.
  TaskMergeArgs a;
  a.base = s.base;
  a.in_dtype = s.dtype;
  a.weights = m.weights;
  a.lambda = static_cast<float>(m.lambda);
  a.normalize = m.normalize;
  a.out_dtype = out_dtype;
  TopKSelection sel;
  TopKSelection outliers;
  // Models whose task vector the magnitude selection prunes (mergekit returns
  // it as it is at density >= 1: no rescale either).
  std::vector<char> pruned(N, 0);
  if (m.method == MergeMethod::Ties || m.method == MergeMethod::BreadcrumbsTies)
    a.sign_consensus = true;
  if (m.method == MergeMethod::Breadcrumbs || m.method == MergeMethod::BreadcrumbsTies) {
    // Keep ranks [n_bot, numel - n_top) of ascending |delta|: the top
    // (numel - n_bot) minus the top n_top, both in the same total order.
    std::vector<uint64_t> keep(N), top(N);
    bool any_top = false;
    for (size_t i = 0; i < N; ++i) {
      const OutlierCounts c = breadcrumbs_counts(s.numel, m.density[i], m.gamma[i]);
      keep[i] = s.numel - c.n_bot;
      top[i] = c.n_top;
      any_top = any_top || c.n_top > 0;
      pruned[i] = m.density[i] < 1.0;
    }
    sel = topk_select(s, keep, range, chunk_elems, comm);
    a.sparsify = Sparsify::Magnitude;
    a.thr_bits = sel.thr_bits;
    a.tie_cutoff = sel.tie_cutoff;
    stats.ties_threshold_bits = sel.thr_bits;
    if (any_top) {  // the same decision on every rank (it depends on numel only)
      outliers = topk_select(s, top, range, chunk_elems, comm);
      a.outlier_thr_bits = outliers.thr_bits;
      a.outlier_tie_cutoff = outliers.tie_cutoff;
    }
  } else if (m.method == MergeMethod::Ties || m.method == MergeMethod::Lrp) {
    // lrp: TIES's top-k per model without the sign election.
    sel = ties_select(s, m.density, range, chunk_elems, comm);
    a.sparsify = Sparsify::Magnitude;
    a.thr_bits = sel.thr_bits;
    a.tie_cutoff = sel.tie_cutoff;
    stats.ties_threshold_bits = sel.thr_bits;
    for (size_t i = 0; i < N; ++i) pruned[i] = m.density[i] < 1.0;
  }
  const bool rescale = m.rescale && m.method != MergeMethod::Lrp &&
                       std::any_of(pruned.begin(), pruned.end(), [](char p) { return p != 0; });
  if (a.sparsify == Sparsify::Magnitude && rescale) {
    // ties / breadcrumbs* with rescale: the magnitude mask as ranks 0 / 1
    // (rescaled_merge), from the same selections the fused pass uses.
    KeepRule k;
    k.row_len = 2;
    k.pruned = pruned;
    for (size_t i = 0; i < N; ++i) {
      k.low.push_back(pruned[i] ? -1.0f : 2.0f);
      k.eps.push_back(pruned[i] ? 1.0f : 0.0f);
    }
    k.needs_delta = true;
    k.ranks = [&](ElementRange c, size_t i, const float* d, uint32_t* out) {
      for (uint64_t j = 0; j < c.size(); ++j) {
        const uint32_t key = key_of(d[j]);
        const uint64_t g = c.begin + j;
        bool keep = key > a.thr_bits[i] || (key == a.thr_bits[i] && g < a.tie_cutoff[i]);
        if (!a.outlier_thr_bits.empty())
          keep = keep && !(key > a.outlier_thr_bits[i] ||
                           (key == a.outlier_thr_bits[i] && g < a.outlier_tie_cutoff[i]));
        out[j] = keep ? 1u : 0u;
      }
    };
    MergeTensorStats st = rescaled_merge(s, m, k, range, out_dtype, chunk_elems, comm, sink);
    st.ties_threshold_bits = stats.ties_threshold_bits;
    return st;
  }
  fused_chunks_parallel(a, s.models, s.base, s.dtype, range, chunk_elems, out_dtype, sink,
                        [](TaskMergeArgs& args) { fused_task_merge(args); });
  return stats;
}

}  // namespace kintsugi
