// AVX2 versions of dot, rmsnorm, softmax, silu_mul and attention (fp32 throughout).
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/avx2_reduce.h"
#include "kernels/exp_avx2.h"
#include "kernels/scalar.h"
#include "kernels/simd_ops.h"

namespace llama31::kernels::avx2 {
namespace {

inline __m256i lane_mask(int count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline float horizontal_max(__m256 v) {
  const __m128 pair = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 two = _mm_max_ps(pair, _mm_movehl_ps(pair, pair));
  return _mm_cvtss_f32(_mm_max_ss(two, _mm_shuffle_ps(two, two, 1)));
}


inline float dot_inline(const float* a, const float* b, int n) {
  __m256 acc0 = _mm256_setzero_ps();
  __m256 acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps();
  __m256 acc3 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  if (i < n) {
    const __m256i mask = lane_mask(n - i);
    acc1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, mask), _mm256_maskload_ps(b + i, mask), acc1);
  }
  return horizontal_sum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

// out[0..dim) = sum_p weight[p] * value row p (from offset on), four vectors of dimensions at a time;
// positions in order, block after block.
void weighted_sum(const float* weight, const KvBlocks& v, size_t offset, int n_ctx, int dim, float* out) {
  for (int d0 = 0; d0 < dim; d0 += 32) {
    const int width = dim - d0 < 32 ? dim - d0 : 32;
    __m256i masks[4];
    for (int c = 0; c < 4; ++c) masks[c] = lane_mask(width - 8 * c);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int b0 = 0; b0 < n_ctx; b0 += v.block_size) {
      const float* block = v.blocks[b0 / v.block_size] + offset + static_cast<size_t>(d0);
      const int count = std::min(v.block_size, n_ctx - b0);
      for (int p = 0; p < count; ++p) {
        const __m256 wp = _mm256_set1_ps(weight[b0 + p]);
        const float* row = block + static_cast<size_t>(p) * v.stride;
        for (int c = 0; c < 4; ++c) acc[c] = _mm256_fmadd_ps(wp, _mm256_maskload_ps(row + 8 * c, masks[c]), acc[c]);
      }
    }
    for (int c = 0; c < 4; ++c) _mm256_maskstore_ps(out + d0 + 8 * c, masks[c], acc[c]);
  }
}

}  // namespace

float dot(const float* a, const float* b, int n) { return dot_inline(a, b, n); }

uint64_t xor_words(const std::byte* p, size_t n) {
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {  // two cache lines per step, one 32-byte load per half line
    a = _mm256_xor_si256(a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    b = _mm256_xor_si256(b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    c = _mm256_xor_si256(c, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    d = _mm256_xor_si256(d, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i all = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
  alignas(32) uint64_t words[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(words), all);
  return words[0] ^ words[1] ^ words[2] ^ words[3] ^ scalar::xor_words(p + i, n - i);
}

void rmsnorm(const float* x, const float* weight, int n, float eps, float* out) {
  const float inv_rms = 1.0f / std::sqrt(dot_inline(x, x, n) / static_cast<float>(n) + eps);
  const __m256 scale = _mm256_set1_ps(inv_rms);
  for (int i = 0; i < n; i += 8) {
    const __m256i mask = lane_mask(n - i);
    const __m256 normed = _mm256_mul_ps(_mm256_maskload_ps(x + i, mask), scale);
    _mm256_maskstore_ps(out + i, mask, _mm256_mul_ps(_mm256_maskload_ps(weight + i, mask), normed));
  }
}

void softmax(float* x, int n) {
  __m256 max_vector = _mm256_set1_ps(-INFINITY);
  for (int i = 0; i < n; i += 8) {
    const __m256i mask = lane_mask(n - i);
    const __m256 values = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(x + i, mask),
                                           _mm256_castsi256_ps(mask));
    max_vector = _mm256_max_ps(max_vector, values);
  }
  const __m256 max_value = _mm256_set1_ps(horizontal_max(max_vector));
  __m256 sum = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) {
    const __m256i mask = lane_mask(n - i);
    const __m256 e = _mm256_and_ps(exp_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), max_value)),
                                   _mm256_castsi256_ps(mask));
    _mm256_maskstore_ps(x + i, mask, e);
    sum = _mm256_add_ps(sum, e);
  }
  const __m256 inv_sum = _mm256_set1_ps(1.0f / horizontal_sum(sum));
  for (int i = 0; i < n; i += 8) {
    const __m256i mask = lane_mask(n - i);
    _mm256_maskstore_ps(x + i, mask, _mm256_mul_ps(_mm256_maskload_ps(x + i, mask), inv_sum));
  }
}

void silu_mul(const float* gate, const float* up, int n, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int i = 0; i < n; i += 8) {
    const __m256i mask = lane_mask(n - i);
    const __m256 g = _mm256_maskload_ps(gate + i, mask);
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    _mm256_maskstore_ps(out + i, mask, _mm256_mul_ps(silu, _mm256_maskload_ps(up + i, mask)));
  }
}

void attention(const float* q, const KvBlocks& keys, const KvBlocks& values, int n_ctx, int n_heads,
               int n_kv_heads, int head_dim, float* out, float* scratch) {
  const int group = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const size_t dim = static_cast<size_t>(head_dim);
  for (int h = 0; h < n_heads; ++h) {
    const size_t kv_offset = static_cast<size_t>(h / group) * dim;
    const float* q_head = q + static_cast<size_t>(h) * dim;
    for (int b0 = 0; b0 < n_ctx; b0 += keys.block_size) {
      const float* block = keys.blocks[b0 / keys.block_size] + kv_offset;
      const int count = std::min(keys.block_size, n_ctx - b0);
      for (int p = 0; p < count; ++p) {
        scratch[b0 + p] = dot_inline(q_head, block + static_cast<size_t>(p) * keys.stride, head_dim) * scale;
      }
    }
    softmax(scratch, n_ctx);
    weighted_sum(scratch, values, kv_offset, n_ctx, head_dim, out + static_cast<size_t>(h) * dim);
  }
}

}  // namespace llama31::kernels::avx2
