#include "kintsugi/model/blas.hpp"

#include <cblas.h>

#include <atomic>
#include <chrono>

namespace kintsugi {

namespace {
std::atomic<int64_t> g_matmul_ns{0};

struct Timer {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  ~Timer() {
    g_matmul_ns +=
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
            .count();
  }
};
int ci(size_t x) {
  return static_cast<int>(x);
}
}  // namespace

void matmul_nt(size_t M, size_t N, size_t K, const float* A, size_t lda, const float* B, size_t ldb,
               float* C, size_t ldc, float beta) {
  if (M == 0 || N == 0) return;
  Timer t;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ci(M), ci(N), ci(K), 1.0f, A, ci(lda), B,
              ci(ldb), beta, C, ci(ldc));
}

void matmul_nn(size_t M, size_t N, size_t K, const float* A, size_t lda, const float* B, size_t ldb,
               float* C, size_t ldc, float beta) {
  if (M == 0 || N == 0) return;
  Timer t;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ci(M), ci(N), ci(K), 1.0f, A, ci(lda), B,
              ci(ldb), beta, C, ci(ldc));
}

double matmul_seconds() {
  return static_cast<double>(g_matmul_ns.load()) * 1e-9;
}
void reset_matmul_seconds() {
  g_matmul_ns = 0;
}

void set_blas_threads(int n) {
  openblas_set_num_threads(n);
}

}  // namespace kintsugi
