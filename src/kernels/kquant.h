// Internal: the K-quant (Q4_K, Q5_K, Q6_K) matmul pieces shared by the levels: llama.cpp's Q8_K
// quantization of activations, the scalar twin, and the prepared-activation record the SIMD kernels read.
//
// Arithmetic (every level): each row of x is quantized per super-block of 256 as llama.cpp's
// quantize_row_q8_K_ref does (quantize_activations_q8_k). Per super-block of a weight row the kernels form
// exact integer sums: Q4_K / Q5_K  isum = sum_j scale_j * sum_i q_i x_i  and  imin = sum_j min_j * (sum of
// x over sub-block j); Q6_K  isum = sum_g scale_g * sum_i (q_i - 32) x_i. The super-block then adds
// (d * dx) * isum - (dmin * dx) * imin in fp32. Only the fp32 steps (the conversion of the integer sums, the
// products with the scales, and the order of the sum over super-blocks) differ between levels.
#pragma once

#include <cstddef>
#include <cstdint>

#include "util/dtype.h"

namespace llama31::kernels {

// One super-block of a prepared row of activations, as the SIMD kernels read it (384 bytes).
struct KquantActivations {
  int8_t q[256];       // the quantized values, in the order the kernel reads them (kquant_fill_records)
  int16_t sums[16];    // Q4_K / Q5_K: sum of q over each sub-block of 32 (8, then zeros);
                       // Q6_K: -4 * sum of q over each group of 16
  float d;             // the activation scale: x ~ d * q
  int32_t unused[7];
  int32_t starts[16];  // Q6_K: -32 * sum of q over each group of 16 (zeros for Q4_K / Q5_K)
};
static_assert(sizeof(KquantActivations) == 384);
inline constexpr size_t kKquantRecordFloats = sizeof(KquantActivations) / sizeof(float);

// Floats of prepared x for `rows` rows of `in` (a multiple of 256) values: rows are evenly sized, row r
// at r * kquant_row_floats(in).
inline size_t kquant_row_floats(int in) { return static_cast<size_t>(in) / 256 * kKquantRecordFloats; }

// Orders of the 256 values of a record. Natural: as in x. SubBlockPairs: the eight sub-blocks of 32 as
// 0, 2, 1, 3, 4, 6, 5, 7, so each 64 bytes of a Q4_K / Q5_K super-block's qs give two sub-blocks' levels
// in their low nibbles and two in their high ones, in the order they are loaded.
enum class KquantOrder { Natural, SubBlockPairs };

// Fills the records of one row of n values (a multiple of 256) for weights of type w_type: quantized by
// quantize_activations_q8_k (the same integers on every level), in `order`.
void kquant_fill_records(const float* x, int n, DType w_type, KquantOrder order, KquantActivations* records);

namespace scalar {

// Activations for K-quant weights as llama.cpp's quantize_row_q8_K_ref: per super-block of 256, the value
// of largest magnitude (the first on ties) max, iscale = -127 / max, q = min(127, round-half-even(x *
// iscale)) and scale = 1 / iscale (all zero for an all-zero block); sums gets the sum of q over each group
// of 16. n a multiple of 256: q gets n values, scales n / 256, sums n / 16.
void quantize_activations_q8_k(const float* x, int n, int8_t* q, float* scales, int16_t* sums);

// The scalar K-quant matmul over output rows [o_begin, o_end) (the scalar level's entry for both row paths).
void kquant_matmul_range(const float* x, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                         float* y, size_t ldy);

}  // namespace scalar
}  // namespace llama31::kernels
