// Internal: AVX2 kernels for Q4_0 weights (both row paths), used by matmul_avx2.cpp.
#pragma once

#include <cstddef>

namespace llama31::kernels::avx2 {

// Floats of scratch for `rows` rows of prepared x, and the preparation (scalar::quantize_activations_q8).
size_t q4_0_scratch(int rows, int in);
const float* q4_0_prepare(const float* x, int rows, int in, float* scratch);
// y[r][o] for o in [o_begin, o_end), any number of rows, from prepared x.
void q4_0_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y, size_t ldy);

}  // namespace llama31::kernels::avx2
