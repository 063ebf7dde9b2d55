// Internal: the AVX-512 matrix-vector (decode) kernel for FP8 E4M3 weights, used by matmul_avx512.cpp.
// The prefill kernel widens tiles of the weights to fp32 and shares the F32/BF16 matrix-matrix kernel.
#pragma once

#include <cstddef>

namespace llama31::kernels::avx512 {

// y[r][o] for o in [o_begin, o_end), rows <= kSmallRows. x: fp32 rows zero-padded to a multiple of 32
// (stride x_stride floats), as small_rows_prepare lays them out for plain float weights.
void fp8_small_rows(const float* x, size_t x_stride, int rows, const void* w, int in, int o_begin, int o_end,
                    float* y, size_t ldy);

}  // namespace llama31::kernels::avx512
