// Internal: AVX2 kernels for K-quant weights (Q4_K, Q5_K, Q6_K), both row paths, used by matmul_avx2.cpp.
#pragma once

#include <cstddef>

#include "util/dtype.h"

namespace llama31::kernels::avx2 {

// Floats of scratch for `rows` rows of prepared x, and the preparation (kquant.h's records, natural order;
// the same integers as scalar::quantize_activations_q8_k).
size_t kquant_scratch(int rows, int in);
const float* kquant_prepare(const float* x, int rows, int in, DType w_type, float* scratch);
// y[r][o] for o in [o_begin, o_end), any number of rows, from prepared x.
void kquant_rows(const float* prepared, int rows, const void* w, DType w_type, int in, int o_begin, int o_end, float* y,
                 size_t ldy);

}  // namespace llama31::kernels::avx2
