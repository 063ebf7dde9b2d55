// Plain scalar twins of every kernel in kernels.h: the reference the SIMD versions are tested against.
#pragma once

#include "kernels/kernels.h"

namespace llama31::kernels::scalar {

void matmul(const float* x, int rows, const void* w, DType w_type, int out, int in, float* y);
void rmsnorm(const float* x, const float* weight, int n, float eps, float* out);
void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin);
void softmax(float* x, int n);
void silu_mul(const float* gate, const float* up, int n, float* out);
void attention(const float* q, const KvBlocks& keys, const KvBlocks& values, int n_ctx, int n_heads,
               int n_kv_heads, int head_dim, float* out, float* scratch);
float dot(const float* a, const float* b, int n);
// XOR of the 64-bit words of p[0, n), the last partial word zero-padded (kernels::read_sweep's loop).
uint64_t xor_words(const std::byte* p, size_t n);

// Activations for Q8_0 weights, as llama.cpp quantizes them: per block of 32, scale = max|x| / 127 and
// q = x * (127 / max|x|) rounded to nearest even (0 for an all-zero block). n a multiple of 32; q gets n
// values, scales n / 32. Every level quantizes x with this function, so they multiply the same integers.
void quantize_activations_q8(const float* x, int n, int8_t* q, float* scales);

}  // namespace llama31::kernels::scalar
