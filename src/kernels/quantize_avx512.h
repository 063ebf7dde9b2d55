// Internal: AVX-512 activation quantization for the int8 kernels (Q8_0 and Q4_0 weights).
#pragma once

#include <cstdint>

namespace llama31::kernels::avx512 {

// The same integers and scales as scalar::quantize_activations_q8, bit for bit (per block of 32:
// scale = max|x| / 127, q = x * (127 / max|x|) rounded to nearest even), vectorized. When block_sums is
// not null it also gets each block's sum of q, which the unsigned-weight kernels need for their
// correction terms. n a multiple of 32.
void quantize_activations_q8(const float* x, int n, int8_t* q, float* scales, int32_t* block_sums);

// Rows of x as the 16-row panel kernels take them (Q8_0_R16, Q4_0_R16), in / 4 + 2 * in / 32 floats
// apart: the row's in int8 values, its in / 32 block scales, then in / 32 int32 corrections
// -level_offset * (block's sum of q), the share of the offset the panels' unsigned levels carry (128 for
// Q8_0_R16's bytes, 8 for Q4_0_R16's nibbles).
void prepare_panel_rows(const float* x, int rows, int in, int32_t level_offset, float* scratch);

}  // namespace llama31::kernels::avx512
