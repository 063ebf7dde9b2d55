// Internal: the AVX2 matrix-vector (decode) kernel for FP8 E4M3 weights, used by matmul_avx2.cpp (see
// fp8_avx512.h; the prefill kernel widens tiles to fp32 there too).
#pragma once

#include <cstddef>

namespace llama31::kernels::avx2 {

// y[r][o] for o in [o_begin, o_end), any number of rows. x: fp32 rows zero-padded to a multiple of 16
// (stride x_stride floats), as small_rows_prepare lays them out for plain float weights.
void fp8_small_rows(const float* x, size_t x_stride, int rows, const void* w, int in, int o_begin, int o_end,
                    float* y, size_t ldy);

}  // namespace llama31::kernels::avx2
