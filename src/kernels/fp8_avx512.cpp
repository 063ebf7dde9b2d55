// AVX-512 products of fp32 rows of x with FP8 E4M3 weights (torch float8_e4m3fn: bias 7, no infinities)
// for a few rows (decode). Decode is memory-bound, so the weights are read as stored, one byte each, and
// widened in registers: a byte b becomes the f16 bits ((b & 0x80) << 8) | ((b & 0x7f) << 7) (sign to
// the sign, the 4 exponent and 3 mantissa bits to the low end of f16's 5 and the top of its 10), which
// vcvtph2ps turns into fp32. f16's exponent bias is 8 more than e4m3's, so that is exactly the e4m3 value
// / 256 for normal and subnormal codes alike (both formats' subnormals share the same scale shift); the
// 256 is folded into each sum at the end, an exact power of two. The NaN codes 0x7f and 0xff come out as
// +-480 / 256 instead of NaN: checkpoints never hold them (quantizers saturate to +-448), so they are
// not honoured. Computed as sign-extend to 16 bits, shift left 7, and with 0xbf80: the sign-extended
// byte's bits 15..7 equal its sign, shifted they fill bits 15 and 14, and the mask clears bit 14.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/fp8_avx512.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

namespace llama31::kernels::avx512 {
namespace {

constexpr size_t kStep = 64;        // weights per row per main-loop step: one cache line
constexpr size_t kAheadBlocks = 3;  // prefetch distance in blocks of O rows (as the bf16 and q8_0 kernels)

// 32 e4m3 bytes (those of mask, zero elsewhere) as two fp32 vectors of value / 256.
inline void widen32(const uint8_t* p, __mmask32 mask, __m512& first, __m512& second) {
  const __m256i bytes = _mm256_maskz_loadu_epi8(mask, p);
  const __m512i half_bits =
      _mm512_and_si512(_mm512_slli_epi16(_mm512_cvtepi8_epi16(bytes), 7), _mm512_set1_epi16(static_cast<short>(0xbf80)));
  first = _mm512_cvtph_ps(_mm512_castsi512_si256(half_bits));
  second = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(half_bits, 1));
}

// R rows of x against O consecutive rows of W; acc[j][r] is one output element, updated in the same order
// whatever R and O are, so results do not depend on how rows and outputs are grouped.
template <int R, int O>
void fp8_block(const float* x, size_t x_stride, const void* w, int in, int o, float* y, size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  const uint8_t* rows[O];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) rows[j] = static_cast<const uint8_t*>(w) + static_cast<size_t>(o + j) * n_in;
  __m512 acc[O][R];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[j][r] = _mm512_setzero_ps();
  }
  // 32 weights of every row from i (mask: which are there) times x[r][i .. i + 32).
  auto half_step = [&](size_t i, __mmask32 mask) __attribute__((always_inline)) {
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      __m512 w_first, w_second;
      widen32(rows[j] + i, mask, w_first, w_second);
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const float* xr = x + static_cast<size_t>(r) * x_stride + i;
        acc[j][r] = _mm512_fmadd_ps(w_first, _mm512_loadu_ps(xr), acc[j][r]);
        acc[j][r] = _mm512_fmadd_ps(w_second, _mm512_loadu_ps(xr + 16), acc[j][r]);
      }
    }
  };
  const size_t full = n_in / kStep * kStep;
  for (size_t i = 0; i < full; i += kStep) {
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      // Into L2, three blocks of rows ahead: each row starts a new stream (see q8_0_avx512.cpp).
      _mm_prefetch(reinterpret_cast<const char*>(rows[j] + i + kAheadBlocks * O * n_in), _MM_HINT_T1);
    }
    half_step(i, ~__mmask32{0});
    half_step(i + 32, ~__mmask32{0});
  }
  for (size_t i = full; i < n_in; i += 32) {
    const size_t count = std::min<size_t>(32, n_in - i);
    half_step(i, count == 32 ? ~__mmask32{0} : static_cast<__mmask32>((uint64_t{1} << count) - 1u));
  }
  const __m512 unscale = _mm512_set1_ps(256.0f);
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      // The sum of value / 256 products, times 256: exact, so the same as scaling every term.
      y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o + j)] =
          _mm512_reduce_add_ps(_mm512_mul_ps(acc[j][r], unscale));
    }
  }
}

template <int R>
void fp8_rows(const float* x, size_t x_stride, const void* w, int in, int o_begin, int o_end, float* y,
              size_t ldy) {
  // Output rows per block: as many as the accumulators (O x R vectors) leave registers for.
  constexpr int kOutRows = R == 1 ? 8 : 4;
  int o = o_begin;
  for (; o + kOutRows <= o_end; o += kOutRows) fp8_block<R, kOutRows>(x, x_stride, w, in, o, y, ldy);
  for (; o < o_end; ++o) fp8_block<R, 1>(x, x_stride, w, in, o, y, ldy);
}

}  // namespace

void fp8_small_rows(const float* x, size_t x_stride, int rows, const void* w, int in, int o_begin, int o_end,
                    float* y, size_t ldy) {
  // Four rows at a time over this chunk of outputs: later passes find the chunk's weights in L2.
  for (int r0 = 0; r0 < rows; r0 += 4) {
    const float* x_group = x + static_cast<size_t>(r0) * x_stride;
    float* y_group = y + static_cast<size_t>(r0) * ldy;
    switch (std::min(4, rows - r0)) {
      case 1: fp8_rows<1>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 2: fp8_rows<2>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 3: fp8_rows<3>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      default: fp8_rows<4>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
    }
  }
}

}  // namespace llama31::kernels::avx512
