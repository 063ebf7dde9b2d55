// AVX-512 versions of dot, rmsnorm, softmax, silu_mul and attention (fp32 throughout).
// GCC 12 reports its own AVX-512 intrinsics (which start from an undefined register on purpose) as
// using uninitialized values once inlined; the pragma must precede the header to cover its lines.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/exp_avx512.h"
#include "kernels/scalar.h"
#include "kernels/simd_ops.h"

namespace llama31::kernels::avx512 {
namespace {

inline __mmask16 tail_mask(int count) { return static_cast<__mmask16>((1u << count) - 1u); }


inline float dot_inline(const float* a, const float* b, int n) {
  __m512 acc0 = _mm512_setzero_ps();
  __m512 acc1 = _mm512_setzero_ps();
  __m512 acc2 = _mm512_setzero_ps();
  __m512 acc3 = _mm512_setzero_ps();
  int i = 0;
  for (; i + 64 <= n; i += 64) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), acc3);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  if (i < n) {
    const __mmask16 mask = tail_mask(n - i);
    acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + i), _mm512_maskz_loadu_ps(mask, b + i), acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

// out[0..dim) = sum_p weight[p] * value row p (from offset on), four vectors of dimensions at a time;
// positions in order, block after block.
void weighted_sum(const float* weight, const KvBlocks& v, size_t offset, int n_ctx, int dim, float* out) {
  for (int d0 = 0; d0 < dim; d0 += 64) {
    const int width = dim - d0 < 64 ? dim - d0 : 64;
    __mmask16 masks[4];
    for (int c = 0; c < 4; ++c) {
      const int count = width - 16 * c;
      masks[c] = count >= 16 ? static_cast<__mmask16>(0xffffu) : count <= 0 ? 0 : tail_mask(count);
    }
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int b0 = 0; b0 < n_ctx; b0 += v.block_size) {
      const float* block = v.blocks[b0 / v.block_size] + offset + static_cast<size_t>(d0);
      const int count = std::min(v.block_size, n_ctx - b0);
      for (int p = 0; p < count; ++p) {
        const __m512 wp = _mm512_set1_ps(weight[b0 + p]);
        const float* row = block + static_cast<size_t>(p) * v.stride;
        for (int c = 0; c < 4; ++c) {
          acc[c] = _mm512_fmadd_ps(wp, _mm512_maskz_loadu_ps(masks[c], row + 16 * c), acc[c]);
        }
      }
    }
    for (int c = 0; c < 4; ++c) _mm512_mask_storeu_ps(out + d0 + 16 * c, masks[c], acc[c]);
  }
}

}  // namespace

float dot(const float* a, const float* b, int n) { return dot_inline(a, b, n); }

uint64_t xor_words(const std::byte* p, size_t n) {
  __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
  size_t i = 0;
  for (; i + 256 <= n; i += 256) {  // four cache lines per step, one 64-byte load each
    a = _mm512_xor_si512(a, _mm512_loadu_si512(p + i));
    b = _mm512_xor_si512(b, _mm512_loadu_si512(p + i + 64));
    c = _mm512_xor_si512(c, _mm512_loadu_si512(p + i + 128));
    d = _mm512_xor_si512(d, _mm512_loadu_si512(p + i + 192));
  }
  const __m512i all = _mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d));
  alignas(64) uint64_t words[8];
  _mm512_store_si512(words, all);
  uint64_t total = 0;
  for (const uint64_t w : words) total ^= w;
  return total ^ scalar::xor_words(p + i, n - i);  // the last < 256 bytes, still whole words from i
}

void rmsnorm(const float* x, const float* weight, int n, float eps, float* out) {
  const float inv_rms = 1.0f / std::sqrt(dot_inline(x, x, n) / static_cast<float>(n) + eps);
  const __m512 scale = _mm512_set1_ps(inv_rms);
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 normed = _mm512_mul_ps(_mm512_loadu_ps(x + i), scale);
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(weight + i), normed));
  }
  if (i < n) {
    const __mmask16 mask = tail_mask(n - i);
    const __m512 normed = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + i), scale);
    _mm512_mask_storeu_ps(out + i, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, weight + i), normed));
  }
}

void softmax(float* x, int n) {
  __m512 max_vector = _mm512_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 16 <= n; i += 16) max_vector = _mm512_max_ps(max_vector, _mm512_loadu_ps(x + i));
  if (i < n) max_vector = _mm512_mask_max_ps(max_vector, tail_mask(n - i), max_vector, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
  const __m512 max_value = _mm512_set1_ps(_mm512_reduce_max_ps(max_vector));
  __m512 sum = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), max_value));
    _mm512_storeu_ps(x + i, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (i < n) {
    const __mmask16 mask = tail_mask(n - i);
    const __m512 e = _mm512_maskz_mov_ps(mask, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), max_value)));
    _mm512_mask_storeu_ps(x + i, mask, e);
    sum = _mm512_add_ps(sum, e);
  }
  const __m512 inv_sum = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
  for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv_sum));
  if (i < n) {
    const __mmask16 mask = tail_mask(n - i);
    _mm512_mask_storeu_ps(x + i, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + i), inv_sum));
  }
}

void silu_mul(const float* gate, const float* up, int n, float* out) {
  const __m512 one = _mm512_set1_ps(1.0f);
  int i = 0;
  for (; i < n; i += 16) {
    const __mmask16 mask = n - i >= 16 ? static_cast<__mmask16>(0xffffu) : tail_mask(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(mask, gate + i);
    const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g))));
    _mm512_mask_storeu_ps(out + i, mask, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(mask, up + i)));
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

}  // namespace llama31::kernels::avx512
