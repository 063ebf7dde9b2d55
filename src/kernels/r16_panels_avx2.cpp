// AVX2 products of weights repacked at load into panels of 16 rows (util/dtype.h: Q4_0_R16, Q8_0_R16) and
// int8 activations, for any number of rows of x: decode streams each panel whole, prefill goes tile by tile.
//
// x is quantized once per call (per block of 32, scalar::quantize_activations_q8, values in -127..127),
// with each block's correction -8 * (sum of its 32 values) for Q4_0. A panel step of 64 bytes is two
// vectors of eight rows, lane j holding four bytes of row j, and vpmaddubsw (unsigned x signed bytes into
// 16-bit pair sums) against the four matching bytes of x, broadcast, gives two pair sums per row:
// - Q4_0_R16: the bytes are nibbles; a mask gives the levels of values 4s..4s+3, a shift and mask those of
//   16+4s..16+4s+3 (0..15, unsigned). |pair| <= 2 * 15 * 127, so the eight of a block add up in 16 bits
//   (8 * 3810 < 32768) and one vpmaddwd per block and vector makes the row's 32-bit sum, which the
//   correction turns into the exact sum of (q - 8) * x.
// - Q8_0_R16: the bytes are q + 128 (the AVX-512 layout); an xor gives q back, and as in the row kernel
//   (q8_0_avx2.cpp) |q| is multiplied by x carrying q's sign (|pair| <= 2 * 128 * 127), each step's pairs
//   summed to 32 bits by vpmaddwd.
// Per block the exact integer sums are scaled by (weight scale * activation scale) into fp32 accumulators,
// so each output is the same sum of per-block terms in the same order whichever path and however many
// rows, and each row of y depends only on its row of x. Unlike the row kernels, the integer sums span a
// whole block before their one conversion to float, and a decode pass reads one stream per panel.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/r16_panels_avx2.h"
#include "kernels/scalar.h"

namespace llama31::kernels::avx2 {
namespace {

constexpr int kPanelRows = kQ8_0PanelRows;
constexpr int kTileBlocks = 16;  // blocks of 32 inputs per tile of depth when many rows share it
constexpr int kMaxRows = 4;      // rows of x per micro-kernel over half a panel (registers: 16 vectors)
constexpr int kStreamRows = 2;   // up to this many rows stream each panel whole, both halves at once
constexpr size_t kStepBytes = 64;
constexpr size_t kAheadSteps = 16;  // decode prefetch distance in steps (1 KB), a little better than none

// Steps of 64 bytes per block of a panel: four of nibbles or eight of bytes.
constexpr int steps_of(DType t) { return t == DType::Q4_0_R16 ? 4 : 8; }

// Prepared x per row: in int8 values, then in / 32 float scales, then in / 32 int32 corrections.
size_t row_floats(int in) { return static_cast<size_t>(in) / 4 + 2 * (static_cast<size_t>(in) / 32); }

// y[r][8h .. 8h + 8) (+)= R rows of prepared x against H halves of one panel (eight rows each, from
// `first_half`), over `blocks` blocks from b0; values and scales point at the panel's block b0.
template <DType T, int R, int H>
void micro_kernel(const float* x, size_t x_stride, int in, int b0, int blocks, const uint8_t* values,
                  const uint16_t* scales, int first_half, float* y, size_t ldy, bool accumulate) {
  constexpr int kSteps = steps_of(T);
  constexpr size_t kBlockValueBytes = kSteps * kStepBytes;
  const size_t n_in = static_cast<size_t>(in);
  __m256 acc[R][H];
  #pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    #pragma GCC unroll 2
    for (int h = 0; h < H; ++h) {
      acc[r][h] = accumulate ? _mm256_loadu_ps(y + static_cast<size_t>(r) * ldy + 8 * h) : _mm256_setzero_ps();
    }
  }
  const __m256i low_mask = _mm256_set1_epi8(0x0f);
  const __m256i sign_bits = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i ones = _mm256_set1_epi16(1);
  for (int bi = 0; bi < blocks; ++bi) {
    const size_t block = static_cast<size_t>(b0 + bi);
    const uint8_t* block_values = values + static_cast<size_t>(bi) * kBlockValueBytes + 32 * static_cast<size_t>(first_half);
    __m256i sums[R][H];  // Q4_0: 16-bit pair sums over the block; Q8_0: 32-bit row sums
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      #pragma GCC unroll 2
      for (int h = 0; h < H; ++h) sums[r][h] = _mm256_setzero_si256();
    }
    #pragma GCC unroll 8
    for (int step = 0; step < kSteps; ++step) {
      if constexpr (H == 2) {
        _mm_prefetch(reinterpret_cast<const char*>(block_values + (step + kAheadSteps) * kStepBytes), _MM_HINT_T0);
      }
      const uint8_t* step_values = block_values + step * kStepBytes;
      if constexpr (T == DType::Q4_0_R16) {
        __m256i low[H], high[H];
        #pragma GCC unroll 2
        for (int h = 0; h < H; ++h) {
          const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(step_values + 32 * h));
          low[h] = _mm256_and_si256(packed, low_mask);
          high[h] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_mask);
        }
        #pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const auto* xr = reinterpret_cast<const uint8_t*>(x + static_cast<size_t>(r) * x_stride) + block * 32 + step * 4;
          int32_t first, second;
          std::memcpy(&first, xr, 4);
          std::memcpy(&second, xr + 16, 4);
          const __m256i x_low = _mm256_set1_epi32(first);
          const __m256i x_high = _mm256_set1_epi32(second);
          #pragma GCC unroll 2
          for (int h = 0; h < H; ++h) {
            sums[r][h] = _mm256_add_epi16(sums[r][h], _mm256_add_epi16(_mm256_maddubs_epi16(low[h], x_low),
                                                                       _mm256_maddubs_epi16(high[h], x_high)));
          }
        }
      } else {
        __m256i q[H], magnitude[H];
        #pragma GCC unroll 2
        for (int h = 0; h < H; ++h) {
          q[h] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(step_values + 32 * h)), sign_bits);
          magnitude[h] = _mm256_sign_epi8(q[h], q[h]);
        }
        #pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          int32_t four;
          std::memcpy(&four, reinterpret_cast<const uint8_t*>(x + static_cast<size_t>(r) * x_stride) + block * 32 + step * 4, 4);
          const __m256i xb = _mm256_set1_epi32(four);
          #pragma GCC unroll 2
          for (int h = 0; h < H; ++h) {
            const __m256i pairs = _mm256_maddubs_epi16(magnitude[h], _mm256_sign_epi8(xb, q[h]));
            sums[r][h] = _mm256_add_epi32(sums[r][h], _mm256_madd_epi16(pairs, ones));
          }
        }
      }
    }
    __m256 dw[H];
    #pragma GCC unroll 2
    for (int h = 0; h < H; ++h) {
      dw[h] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(
          scales + static_cast<size_t>(bi) * kPanelRows + 8 * static_cast<size_t>(first_half + h))));
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const float* xr = x + static_cast<size_t>(r) * x_stride;
      const __m256 dx = _mm256_set1_ps(xr[n_in / 4 + block]);
      __m256i start = _mm256_setzero_si256();
      if constexpr (T == DType::Q4_0_R16) {
        int32_t correction;  // stored among the floats: read by memcpy
        std::memcpy(&correction, xr + n_in / 4 + n_in / 32 + block, sizeof correction);
        start = _mm256_set1_epi32(correction);
      }
      #pragma GCC unroll 2
      for (int h = 0; h < H; ++h) {
        const __m256i row_sums = T == DType::Q4_0_R16 ? _mm256_add_epi32(_mm256_madd_epi16(sums[r][h], ones), start)
                                                      : sums[r][h];
        acc[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(row_sums), _mm256_mul_ps(dw[h], dx), acc[r][h]);
      }
    }
  }
  #pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    #pragma GCC unroll 2
    for (int h = 0; h < H; ++h) _mm256_storeu_ps(y + static_cast<size_t>(r) * ldy + 8 * h, acc[r][h]);
  }
}

using MicroKernel = void (*)(const float*, size_t, int, int, int, const uint8_t*, const uint16_t*, int, float*, size_t,
                             bool);
template <DType T>
constexpr MicroKernel kHalfPanel[kMaxRows + 1] = {nullptr, micro_kernel<T, 1, 1>, micro_kernel<T, 2, 1>,
                                                  micro_kernel<T, 3, 1>, micro_kernel<T, 4, 1>};
template <DType T>
constexpr MicroKernel kWholePanel[kStreamRows + 1] = {nullptr, micro_kernel<T, 1, 2>, micro_kernel<T, 2, 2>};

template <DType T>
void panel_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                size_t ldy) {
  constexpr size_t kBlockValueBytes = steps_of(T) * kStepBytes;
  const int n_panels = (o_end - o_begin) / kPanelRows;  // o_begin and o_end are whole panels
  const int blocks = in / 32;
  const size_t panel_bytes = kPanelRows * row_bytes(T, in);
  const size_t x_stride = row_floats(in);
  const auto* first = static_cast<const uint8_t*>(w) + static_cast<size_t>(o_begin / kPanelRows) * panel_bytes;
  const auto values_of = [&](int p, int b0) {
    return first + static_cast<size_t>(p) * panel_bytes + static_cast<size_t>(b0) * kBlockValueBytes;
  };
  const auto scales_of = [&](int p, int b0) {
    return reinterpret_cast<const uint16_t*>(first + static_cast<size_t>(p) * panel_bytes +
                                             static_cast<size_t>(blocks) * kBlockValueBytes) +
           static_cast<size_t>(b0) * kPanelRows;
  };
  if (rows <= kStreamRows) {  // decode: each panel read once, start to end
    for (int p = 0; p < n_panels; ++p) {
      kWholePanel<T>[rows](prepared, x_stride, in, 0, blocks, values_of(p, 0), scales_of(p, 0), 0,
                           y + static_cast<size_t>(o_begin + p * kPanelRows), ldy, false);
    }
    return;
  }
  // Many rows: a tile of depth of this chunk's panels stays in cache while every group of rows passes
  // over it; y holds the sums between tiles.
  for (int b0 = 0; b0 < blocks; b0 += kTileBlocks) {
    const int tile = std::min(kTileBlocks, blocks - b0);
    for (int r0 = 0; r0 < rows; r0 += kMaxRows) {
      const int r_count = std::min(kMaxRows, rows - r0);
      const float* x_rows = prepared + static_cast<size_t>(r0) * x_stride;
      for (int p = 0; p < n_panels; ++p) {
        for (int half = 0; half < 2; ++half) {
          float* y_block = y + static_cast<size_t>(r0) * ldy + static_cast<size_t>(o_begin + p * kPanelRows + 8 * half);
          kHalfPanel<T>[r_count](x_rows, x_stride, in, b0, tile, values_of(p, b0), scales_of(p, b0), half, y_block,
                                 ldy, b0 > 0);
        }
      }
    }
  }
}

}  // namespace

size_t r16_scratch(int rows, int in) { return static_cast<size_t>(rows) * row_floats(in); }

const float* r16_prepare(const float* x, int rows, int in, float* scratch) {
  const size_t n_in = static_cast<size_t>(in);
  const size_t blocks = n_in / 32;
  for (int r = 0; r < rows; ++r) {
    float* row = scratch + static_cast<size_t>(r) * row_floats(in);
    auto* values = reinterpret_cast<int8_t*>(row);
    scalar::quantize_activations_q8(x + static_cast<size_t>(r) * n_in, in, values, row + n_in / 4);
    for (size_t b = 0; b < blocks; ++b) {
      int32_t sum = 0;
      for (size_t i = 0; i < 32; ++i) sum += values[b * 32 + i];
      const int32_t correction = -8 * sum;
      std::memcpy(row + n_in / 4 + blocks + b, &correction, sizeof correction);
    }
  }
  return scratch;
}

void r16_rows(const float* prepared, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
              float* y, size_t ldy) {
  if (w_type == DType::Q4_0_R16) {
    panel_rows<DType::Q4_0_R16>(prepared, rows, w, in, o_begin, o_end, y, ldy);
  } else {
    panel_rows<DType::Q8_0_R16>(prepared, rows, w, in, o_begin, o_end, y, ldy);
  }
}

}  // namespace llama31::kernels::avx2
