#pragma once
// The CUDA backend of the kernel API (kernels/merge_kernels.cu): the same
// operations and the same per-element fp32 sequence as the CPU kernels in
// kernels.hpp, on device pointers. Declared only when the build has CUDA
// (KINTSUGI_HAVE_CUDA); callers check cuda_device_count() > 0 first.
#include <cstddef>
#include <span>

#include "kintsugi/io/dtype.hpp"
#include "kintsugi/kernels/merge_kernels.hpp"

namespace kintsugi::cuda {

// Number of usable GPUs (0 when the driver or a device is missing).
int device_count();

// Plain device memory helpers, so callers need no CUDA headers. They throw
// RuntimeError naming the CUDA call and its error on failure.
void* alloc(size_t bytes);
void free(void* p);
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);

// fused_weighted_sum on device pointers (inputs and out on the current device).
void fused_weighted_sum(std::span<const void* const> d_inputs, DType in_dtype,
                        std::span<const float> weights, void* d_out, DType out_dtype, size_t n);

// fused_task_merge: args.inputs, args.base and args.out are device pointers;
// the spans of weights, densities, thresholds and cutoffs are host memory;
// della's args.ranks is device memory (N * n ranks).
void fused_task_merge(const TaskMergeArgs& args);

// fused_sce_merge: args.inputs, args.base and args.out are device pointers.
void fused_sce_merge(const SceMergeArgs& args);
// fused_vector_merge: args.inputs, args.base and args.out are device
// pointers; args.weights is host memory (copied to the device here).
void fused_vector_merge(const VectorMergeArgs& args);

// fused_ram_merge: args.inputs, args.base and args.out are device pointers;
// args.lambda is host memory.
void fused_ram_merge(const RamMergeArgs& args);
// fused_fusion_merge: args.base, args.model and args.out are device pointers;
// args.kl_rows is host memory (copied to the device here).
void fused_fusion_merge(const FusionMergeArgs& args);
// fused_cabs_merge: args.inputs, args.base and args.out are device pointers;
// the rest is host memory.
void fused_cabs_merge(const CabsMergeArgs& args);

void fused_nearswap(const void* d_v0, const void* d_v1, DType in_dtype, float t, void* d_out,
                    DType out_dtype, size_t n);

void fused_scale(const void* d_x, DType in_dtype, float scale, void* d_out, DType out_dtype,
                 size_t n);

}  // namespace kintsugi::cuda
