// Internal: the AVX2 kernels for weights repacked into panels of 16 rows (util/dtype.h: Q4_0_R16 and
// Q8_0_R16), for any number of rows of x, used by matmul_avx2.cpp (and its x preparation by q4_0_gemm_avx512.cpp).
#pragma once

#include <cstddef>

#include "util/dtype.h"

namespace llama31::kernels::avx2 {

// Floats of scratch for `rows` rows of prepared x, and the preparation: each row quantized per block of 32
// (scalar::quantize_activations_q8), with its scales and per-block corrections for Q4_0_R16.
size_t r16_scratch(int rows, int in);
const float* r16_prepare(const float* x, int rows, int in, float* scratch);
// y[r][o] for o in [o_begin, o_end) (multiples of 16) from prepared x; w_type Q4_0_R16 or Q8_0_R16.
void r16_rows(const float* prepared, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
              float* y, size_t ldy);

}  // namespace llama31::kernels::avx2
