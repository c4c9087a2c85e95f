#pragma once
// KS_HD marks a function both the host compiler and nvcc compile, so that the
// CPU code and the CUDA kernels share one definition (and so the same bits).
#if defined(__CUDACC__)
#define KS_HD __host__ __device__ __forceinline__
#else
#define KS_HD inline
#endif
