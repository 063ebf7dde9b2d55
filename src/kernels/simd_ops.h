// Internal: the element-wise and attention kernels of the SIMD levels (ops_avx512.cpp, ops_avx2.cpp,
// ops_neon.cpp).
// Only call a level's functions after checking that the CPU supports it (dispatch.cpp does).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"

namespace llama31::kernels::avx512 {
void rmsnorm(const float* x, const float* weight, int n, float eps, float* out);
void softmax(float* x, int n);
void silu_mul(const float* gate, const float* up, int n, float* out);
void attention(const float* q, const KvBlocks& keys, const KvBlocks& values, int n_ctx, int n_heads,
               int n_kv_heads, int head_dim, float* out, float* scratch);
float dot(const float* a, const float* b, int n);
uint64_t xor_words(const std::byte* p, size_t n);
}  // namespace llama31::kernels::avx512

namespace llama31::kernels::avx2 {
void rmsnorm(const float* x, const float* weight, int n, float eps, float* out);
void softmax(float* x, int n);
void silu_mul(const float* gate, const float* up, int n, float* out);
void attention(const float* q, const KvBlocks& keys, const KvBlocks& values, int n_ctx, int n_heads,
               int n_kv_heads, int head_dim, float* out, float* scratch);
float dot(const float* a, const float* b, int n);
uint64_t xor_words(const std::byte* p, size_t n);
}  // namespace llama31::kernels::avx2

namespace llama31::kernels::neon {  // AArch64 builds only (ops_neon.cpp)
void rmsnorm(const float* x, const float* weight, int n, float eps, float* out);
void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin);
void softmax(float* x, int n);
void silu_mul(const float* gate, const float* up, int n, float* out);
void attention(const float* q, const KvBlocks& keys, const KvBlocks& values, int n_ctx, int n_heads,
               int n_kv_heads, int head_dim, float* out, float* scratch);
float dot(const float* a, const float* b, int n);
}  // namespace llama31::kernels::neon
