#pragma once
// The kernel API shared by the merge engine, the evaluator and the service.
// CPU implementations live in src/merge/; CUDA versions in kernels/ (same
// semantics; see the backend-agreement test).
#include <cstddef>
#include <span>

#include "kintsugi/io/dtype.hpp"

namespace kintsugi {

// out[j] = sum_{i=0..N-1} weights[i] * inputs[i][j] for j < n, accumulated in
// fp32 in the order i = 0..N-1 (so results are bitwise reproducible), rounded
// to nearest even into out_dtype. Inputs share in_dtype (BF16, F16 or F32);
// out_dtype is BF16, F16 or F32.
void fused_weighted_sum(std::span<const void* const> inputs, DType in_dtype,
                        std::span<const float> weights, void* out, DType out_dtype, size_t n);

}  // namespace kintsugi
