#pragma once
// The evaluator's matrix products, through OpenBLAS's cblas (row-major fp32).
// Every call is timed so `bench eval` can report the share of wall time spent in
// matrix products.
#include <cstddef>

namespace kintsugi {

// C[M,N] = A[M,K] * B[N,K]^T + beta * C   (y = x W^T for a weight W[N,K])
void matmul_nt(size_t M, size_t N, size_t K, const float* A, size_t lda, const float* B, size_t ldb,
               float* C, size_t ldc, float beta = 0.0f);
// C[M,N] = A[M,K] * B[K,N] + beta * C
void matmul_nn(size_t M, size_t N, size_t K, const float* A, size_t lda, const float* B, size_t ldb,
               float* C, size_t ldc, float beta = 0.0f);

// Seconds spent in the two functions above by this process since the last reset.
double matmul_seconds();
void reset_matmul_seconds();

// Sets OpenBLAS's thread count (the evaluator uses 1 per MPI rank by default:
// ranks already occupy the cores, and one thread keeps results reproducible).
void set_blas_threads(int n);

}  // namespace kintsugi
