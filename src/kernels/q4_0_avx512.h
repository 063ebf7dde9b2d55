// Internal: the AVX-512 VNNI kernels for Q4_0 weights, used by matmul_avx512.cpp: matrix-vector for
// decode rows (q4_0_avx512.cpp) and matrix-matrix for prefill (q4_0_gemm_avx512.cpp).
#pragma once

#include <cstddef>

namespace llama31::kernels::avx512 {

// Floats of scratch for `rows` rows of prepared x.
size_t q4_0_scratch(int rows, int in);
// Quantizes each row of x (scalar::quantize_activations_q8) into scratch in the decode kernel's layout.
const float* q4_0_prepare(const float* x, int rows, int in, float* scratch);
// y[r][o] for o in [o_begin, o_end), rows <= kSmallRows, from prepared x.
void q4_0_small_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                     size_t ldy);

// The matrix-matrix (prefill) kernel for Q4_0: x quantized per block once for all rows (prepare), the
// weights of each chunk unpacked to bytes in panels so one vpdpbusd computes 16 output rows.
size_t q4_0_many_scratch(int rows, int in);
const float* q4_0_many_prepare(const float* x, int rows, int in, float* scratch);
void q4_0_many_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                    size_t ldy);
// Q4_0_R16 weights (util/dtype.h) for any number of rows, from q4_0_many_prepare's x: the many-rows kernel
// without its unpacking, for decode and prefill alike. o_begin and o_end are whole panels of 16.
void q4_0_r16_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                   size_t ldy);

}  // namespace llama31::kernels::avx512
