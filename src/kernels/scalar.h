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

}  // namespace llama31::kernels::scalar
