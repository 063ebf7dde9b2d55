// Internal: the element-wise and attention kernels of the SIMD levels (ops_avx512.cpp, ops_avx2.cpp).
// Only call a level's functions after checking that the CPU supports it (dispatch.cpp does).
#pragma once

#include <cstddef>

namespace llama31::kernels::avx512 {
void rmsnorm(const float* x, const float* weight, int n, float eps, float* out);
void softmax(float* x, int n);
void silu_mul(const float* gate, const float* up, int n, float* out);
void attention(const float* q, const float* k_cache, const float* v_cache, int n_ctx, int n_heads,
               int n_kv_heads, int head_dim, size_t kv_stride, float* out, float* scratch);
float dot(const float* a, const float* b, int n);
}  // namespace llama31::kernels::avx512

namespace llama31::kernels::avx2 {
void rmsnorm(const float* x, const float* weight, int n, float eps, float* out);
void softmax(float* x, int n);
void silu_mul(const float* gate, const float* up, int n, float* out);
void attention(const float* q, const float* k_cache, const float* v_cache, int n_ctx, int n_heads,
               int n_kv_heads, int head_dim, size_t kv_stride, float* out, float* scratch);
float dot(const float* a, const float* b, int n);
}  // namespace llama31::kernels::avx2
