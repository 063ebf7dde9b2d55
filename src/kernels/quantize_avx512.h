// Internal: AVX-512 activation quantization for the int8 kernels (Q8_0 and Q4_0 weights).
#pragma once

#include <cstdint>

namespace llama31::kernels::avx512 {

// The same integers and scales as scalar::quantize_activations_q8, bit for bit (per block of 32:
// scale = max|x| / 127, q = x * (127 / max|x|) rounded to nearest even), vectorized. When block_sums is
// not null it also gets each block's sum of q, which the unsigned-weight kernels need for their
// correction terms. n a multiple of 32.
void quantize_activations_q8(const float* x, int n, int8_t* q, float* scales, int32_t* block_sums);

}  // namespace llama31::kernels::avx512
