// NEON versions of dot, rmsnorm, rope, softmax, silu_mul and attention (fp32 throughout, AArch64). A
// length's last n % 4 elements go through a four-lane copy, so they take the vector lanes' arithmetic.
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "kernels/simd_ops.h"

namespace llama31::kernels::neon {
namespace {

// The first count (< 4) values at p, the other lanes `fill`.
inline float32x4_t load_tail(const float* p, int count, float fill) {
  alignas(16) float lanes[4] = {fill, fill, fill, fill};
  std::copy(p, p + count, lanes);
  return vld1q_f32(lanes);
}

inline void store_tail(float* p, int count, float32x4_t v) {
  alignas(16) float lanes[4];
  vst1q_f32(lanes, v);
  std::copy(lanes, lanes + count, p);
}

// e^x to about 1 ulp for x in [-87.3, 88.3], as exp_ps in ops_avx2.cpp: x = n ln2 + r, a degree-6
// polynomial for e^r, times 2^n built in the exponent bits. Inputs outside are clamped (tiny results
// come out as ~1e-38 instead of smaller, huge ones as ~3e38 instead of inf); NaN stays NaN.
inline float32x4_t exp_ps(float32x4_t x) {
  x = vminq_f32(vdupq_n_f32(88.3762626647949f), x);
  x = vmaxq_f32(vdupq_n_f32(-87.3365478515625f), x);
  const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
  p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
  p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
  p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
  // n is in [-126, 127] after the clamps except n = 128 at the top; split 2^n = 2^(n-1) * 2 there.
  const uint32x4_t top = vcgtq_f32(n, vdupq_n_f32(127.5f));
  const float32x4_t n_used = vsubq_f32(n, vbslq_f32(top, vdupq_n_f32(1.0f), vdupq_n_f32(0.0f)));
  p = vmulq_f32(p, vbslq_f32(top, vdupq_n_f32(2.0f), vdupq_n_f32(1.0f)));
  const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n_used), vdupq_n_s32(127)), 23);
  return vmulq_f32(p, vreinterpretq_f32_s32(bits));
}

inline float dot_inline(const float* a, const float* b, int n) {
  float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    #pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) acc[c] = vfmaq_f32(acc[c], vld1q_f32(a + i + 4 * c), vld1q_f32(b + i + 4 * c));
  }
  for (; i + 4 <= n; i += 4) acc[0] = vfmaq_f32(acc[0], vld1q_f32(a + i), vld1q_f32(b + i));
  if (i < n) acc[1] = vfmaq_f32(acc[1], load_tail(a + i, n - i, 0.0f), load_tail(b + i, n - i, 0.0f));
  return vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
}

// out[0..dim) = sum_p weight[p] * value row p (from offset on), four vectors of dimensions at a time;
// positions in order, block after block.
void weighted_sum(const float* weight, const KvBlocks& v, size_t offset, int n_ctx, int dim, float* out) {
  int d0 = 0;
  for (; d0 + 16 <= dim; d0 += 16) {
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (int b0 = 0; b0 < n_ctx; b0 += v.block_size) {
      const float* block = v.blocks[b0 / v.block_size] + offset + static_cast<size_t>(d0);
      const int count = std::min(v.block_size, n_ctx - b0);
      for (int p = 0; p < count; ++p) {
        const float wp = weight[b0 + p];
        const float* row = block + static_cast<size_t>(p) * v.stride;
        #pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) acc[c] = vfmaq_n_f32(acc[c], vld1q_f32(row + 4 * c), wp);
      }
    }
    for (int c = 0; c < 4; ++c) vst1q_f32(out + d0 + 4 * c, acc[c]);
  }
  for (; d0 < dim; d0 += 4) {  // the last dim % 16 dimensions, a vector (or the tail copy) at a time
    const int width = std::min(4, dim - d0);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int b0 = 0; b0 < n_ctx; b0 += v.block_size) {
      const float* block = v.blocks[b0 / v.block_size] + offset + static_cast<size_t>(d0);
      const int count = std::min(v.block_size, n_ctx - b0);
      for (int p = 0; p < count; ++p) {
        const float* row = block + static_cast<size_t>(p) * v.stride;
        acc = vfmaq_n_f32(acc, width == 4 ? vld1q_f32(row) : load_tail(row, width, 0.0f), weight[b0 + p]);
      }
    }
    if (width == 4) {
      vst1q_f32(out + d0, acc);
    } else {
      store_tail(out + d0, width, acc);
    }
  }
}

}  // namespace

float dot(const float* a, const float* b, int n) { return dot_inline(a, b, n); }

void rmsnorm(const float* x, const float* weight, int n, float eps, float* out) {
  const float inv_rms = 1.0f / std::sqrt(dot_inline(x, x, n) / static_cast<float>(n) + eps);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    vst1q_f32(out + i, vmulq_f32(vld1q_f32(weight + i), vmulq_n_f32(vld1q_f32(x + i), inv_rms)));
  }
  if (i < n) {
    const float32x4_t normed = vmulq_n_f32(load_tail(x + i, n - i, 0.0f), inv_rms);
    store_tail(out + i, n - i, vmulq_f32(load_tail(weight + i, n - i, 0.0f), normed));
  }
}

void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* first = x + static_cast<size_t>(h) * static_cast<size_t>(head_dim);
    float* second = first + half;
    for (int i = 0; i < half; i += 4) {
      const int count = std::min(4, half - i);
      const bool full = count == 4;
      const float32x4_t a = full ? vld1q_f32(first + i) : load_tail(first + i, count, 0.0f);
      const float32x4_t b = full ? vld1q_f32(second + i) : load_tail(second + i, count, 0.0f);
      const float32x4_t c = full ? vld1q_f32(cos + i) : load_tail(cos + i, count, 0.0f);
      const float32x4_t s = full ? vld1q_f32(sin + i) : load_tail(sin + i, count, 0.0f);
      const float32x4_t rotated_a = vsubq_f32(vmulq_f32(a, c), vmulq_f32(b, s));
      const float32x4_t rotated_b = vaddq_f32(vmulq_f32(b, c), vmulq_f32(a, s));
      if (full) {
        vst1q_f32(first + i, rotated_a);
        vst1q_f32(second + i, rotated_b);
      } else {
        store_tail(first + i, count, rotated_a);
        store_tail(second + i, count, rotated_b);
      }
    }
  }
}

void softmax(float* x, int n) {
  const int full = n / 4 * 4;
  float32x4_t max_vector = vdupq_n_f32(-INFINITY);
  for (int i = 0; i < full; i += 4) max_vector = vmaxq_f32(max_vector, vld1q_f32(x + i));
  if (full < n) max_vector = vmaxq_f32(max_vector, load_tail(x + full, n - full, -INFINITY));
  const float32x4_t max_value = vdupq_n_f32(vmaxvq_f32(max_vector));
  float32x4_t sum = vdupq_n_f32(0.0f);
  for (int i = 0; i < full; i += 4) {
    const float32x4_t e = exp_ps(vsubq_f32(vld1q_f32(x + i), max_value));
    vst1q_f32(x + i, e);
    sum = vaddq_f32(sum, e);
  }
  if (full < n) {
    // The padding lanes' exp (of -inf, clamped: ~1e-38) stays out of the sum: the tail is read back.
    store_tail(x + full, n - full, exp_ps(vsubq_f32(load_tail(x + full, n - full, -INFINITY), max_value)));
    sum = vaddq_f32(sum, load_tail(x + full, n - full, 0.0f));
  }
  const float inv_sum = 1.0f / vaddvq_f32(sum);
  for (int i = 0; i < full; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv_sum));
  for (int i = full; i < n; ++i) x[i] *= inv_sum;
}

void silu_mul(const float* gate, const float* up, int n, float* out) {
  const float32x4_t one = vdupq_n_f32(1.0f);
  const auto silu_times = [&](float32x4_t g, float32x4_t u) {
    return vmulq_f32(vdivq_f32(g, vaddq_f32(one, exp_ps(vnegq_f32(g)))), u);
  };
  int i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(out + i, silu_times(vld1q_f32(gate + i), vld1q_f32(up + i)));
  if (i < n) store_tail(out + i, n - i, silu_times(load_tail(gate + i, n - i, 0.0f), load_tail(up + i, n - i, 0.0f)));
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

}  // namespace llama31::kernels::neon
