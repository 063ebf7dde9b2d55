// Internal: the AVX-512 VNNI kernels for K-quant weights (Q4_K, Q5_K, Q6_K), used by matmul_avx512.cpp:
// matrix-vector for decode rows (kquant_avx512.cpp) and matrix-matrix for prefill (kquant_gemm_avx512.cpp).
// Both read x prepared as kquant.h's records (Q8_K quantization, the same integers as the scalar twin).
#pragma once

#include <cstddef>

#include "util/dtype.h"

namespace llama31::kernels::avx512 {

// Floats of scratch for `rows` rows of prepared x (either kernel).
size_t kquant_scratch(int rows, int in);
// Quantizes each row of x into records in the decode kernel's order for w_type.
const float* kquant_prepare(const float* x, int rows, int in, DType w_type, float* scratch);
// y[r][o] for o in [o_begin, o_end), rows <= kSmallRows, from prepared x.
void kquant_small_rows(const float* prepared, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                       float* y, size_t ldy);

// The matrix-matrix (prefill) kernel: x in natural-order records (kquant_many_prepare), each chunk's
// super-blocks unpacked to byte levels in panels of 16 rows so one vpdpbusd computes 16 output rows.
const float* kquant_many_prepare(const float* x, int rows, int in, DType w_type, float* scratch);
void kquant_many_rows(const float* prepared, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                      float* y, size_t ldy);

// One row of n values quantized into records (the same integers and scales as
// scalar::quantize_activations_q8_k, bit for bit), vectorized.
void kquant_fill_records_avx512(const float* x, int n, DType w_type, bool pairs_order, void* records);

}  // namespace llama31::kernels::avx512
