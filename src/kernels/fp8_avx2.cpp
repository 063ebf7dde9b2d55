// AVX2 products of fp32 rows of x with FP8 E4M3 weights for a few rows (decode), as fp8_avx512.cpp with
// 8-float vectors: each weight byte is read once and widened in registers to the f16 bits
// ((b & 0x80) << 8) | ((b & 0x7f) << 7), exactly the e4m3 value / 256 (normal and subnormal codes), which
// _mm256_cvtph_ps turns into fp32; the 256 is folded into each sum at the end (an exact power of two).
// The NaN codes 0x7f / 0xff come out as +-480 / 256 rather than NaN (checkpoints never hold them).
#include "kernels/fp8_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/avx2_reduce.h"

namespace llama31::kernels::avx2 {
namespace {

constexpr size_t kSub = 16;         // weights per widening (one 16-byte load)
constexpr size_t kStep = 64;        // weights per row per main-loop step: one cache line
constexpr size_t kAheadBlocks = 3;  // prefetch distance in blocks of O rows (as the q8_0 kernel)

// 16 e4m3 bytes as two fp32 vectors of value / 256: sign-extended to 16 bits, shifted left 7 and masked
// with 0xbf80 (the copies of the sign in bits 15 and 14; bit 14 cleared).
inline void widen16(const uint8_t* p, __m256& first, __m256& second) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i half_bits = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(bytes), 7),
                                             _mm256_set1_epi16(static_cast<short>(0xbf80)));
  first = _mm256_cvtph_ps(_mm256_castsi256_si128(half_bits));
  second = _mm256_cvtph_ps(_mm256_extracti128_si256(half_bits, 1));
}

template <int R, int O>
void fp8_block(const float* x, size_t x_stride, const void* w, int in, int o, float* y, size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  const uint8_t* rows[O];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) rows[j] = static_cast<const uint8_t*>(w) + static_cast<size_t>(o + j) * n_in;
  __m256 acc[O][R];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[j][r] = _mm256_setzero_ps();
  }
  // 16 weights of every row (sources[j]) times x[r][i .. i + 16), in the same order whatever R and O are.
  auto sub_step = [&](const uint8_t* const* sources, size_t i) __attribute__((always_inline)) {
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      __m256 w_first, w_second;
      widen16(sources[j], w_first, w_second);
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const float* xr = x + static_cast<size_t>(r) * x_stride + i;
        acc[j][r] = _mm256_fmadd_ps(w_first, _mm256_loadu_ps(xr), acc[j][r]);
        acc[j][r] = _mm256_fmadd_ps(w_second, _mm256_loadu_ps(xr + 8), acc[j][r]);
      }
    }
  };
  const size_t full = n_in / kStep * kStep;
  for (size_t i = 0; i < full; i += kStep) {
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(rows[j] + i + kAheadBlocks * O * n_in), _MM_HINT_T1);
    }
    #pragma GCC unroll 4
    for (size_t s = 0; s < kStep; s += kSub) {
      const uint8_t* sources[O];
      #pragma GCC unroll 16
      for (int j = 0; j < O; ++j) sources[j] = rows[j] + i + s;
      sub_step(sources, i + s);
    }
  }
  for (size_t i = full; i < n_in; i += kSub) {
    const size_t count = std::min(kSub, n_in - i);
    alignas(16) uint8_t tails[O][kSub] = {};  // a partial last block, zero-padded (zero widens to 0)
    const uint8_t* sources[O];
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      if (count == kSub) {
        sources[j] = rows[j] + i;
      } else {
        std::memcpy(tails[j], rows[j] + i, count);
        sources[j] = tails[j];
      }
    }
    sub_step(sources, i);
  }
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      // The sum of value / 256 products, times 256: exact.
      y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o + j)] = horizontal_sum(acc[j][r]) * 256.0f;
    }
  }
}

template <int R>
void fp8_rows(const float* x, size_t x_stride, const void* w, int in, int o_begin, int o_end, float* y,
              size_t ldy) {
  // Output rows per block: as many as the accumulators (O x R vectors) leave registers for.
  constexpr int kOutRows = R == 1 ? 6 : R == 2 ? 4 : 2;
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

}  // namespace llama31::kernels::avx2
