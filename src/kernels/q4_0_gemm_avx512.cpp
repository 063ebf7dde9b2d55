// AVX-512 VNNI matrix-matrix product of Q4_0 weights and int8 activations (prefill).
//
// x is quantized once per call (per block of 32, scalar::quantize_activations_q8), with each block's
// correction -8 * (sum of its 32 values). Each chunk of output rows is unpacked per tile of depth into
// panels of 16 rows: for every block of 32 inputs, eight 64-byte steps whose lane j holds four consecutive
// levels (q, 0..15) of row j, then the block's 16 weight scales. One vpdpbusd (levels unsigned, x signed,
// its four bytes broadcast) then adds four products to each of the 16 rows' sums for one row of x; the
// sums start at the correction, so they end as the exact sum of (q - 8) * x. Per block the sums are scaled
// by (weight scale * activation scale) into fp32 accumulators, so each output is the same sum of per-block
// terms in the same order as the scalar twin, and each row of y depends only on its row of x.
// Q4_0_R16 weights (util/dtype.h), repacked once at load, go through the same micro-kernel without the
// per-call unpacking, for decode and prefill alike: its 64-byte steps hold nibbles, whose low and high
// halves are the levels of two sets of four values, so a step is one load, two masks and two vpdpbusd.
// The integer sums are those of the rows' layout, so Q4_0_R16 gives the rows' results bit for bit.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/aligned_buffer.h"
#include "kernels/q4_0_avx512.h"
#include "kernels/quantize_avx512.h"
#include "kernels/r16_panels_avx2.h"
#include "util/dtype.h"

namespace llama31::kernels::avx512 {
namespace {

constexpr int kPanelRows = static_cast<int>(kQ8_0PanelRows);  // Q4_0_R16 panels have as many
constexpr int kTileBlocks = 16;  // blocks of 32 inputs per packed tile (512 inputs)
constexpr int kMaxRows = 6;      // rows of x per micro-kernel: 2 panels x 6 rows = 12 integer accumulators
// Bytes of one panel's block: 8 steps x 64 bytes of levels, 16 float scales.
constexpr size_t kPanelBlockBytes = 8 * 64 + 64;
// Q4_0_R16 nibbles are prefetched 2 KB (8 blocks) ahead of the loads: decode streams each panel whole and
// ran at 53% of the read bandwidth without it, 63-74% with it (1 KB: 59-68%, 4 KB no better); prefill,
// which reuses each tile from cache, is unchanged.
constexpr size_t kAheadBytes = 2048;

// Prepared x per row: in int8 values, then in / 32 float scales, then in / 32 int32 corrections.
size_t row_floats(int in) { return static_cast<size_t>(in) / 4 + 2 * (static_cast<size_t>(in) / 32); }

// Packs rows [o, o + 16) (zeros past o_end) for blocks [b0, b0 + blocks) into one panel.
void pack_panel(const void* w, int in, int o, int o_end, int b0, int blocks, uint8_t* panel) {
  const size_t n_in = static_cast<size_t>(in);
  const size_t w_row = row_bytes(DType::Q4_0, in);
  const __m128i low_mask = _mm_set1_epi8(0x0f);
  for (int bi = 0; bi < blocks; ++bi) {
    uint8_t* dst = panel + static_cast<size_t>(bi) * kPanelBlockBytes;
    float scales[kPanelRows] = {};
    std::memset(dst, 0, 8 * 64);
    for (int j = 0; j < kPanelRows && o + j < o_end; ++j) {
      const char* row = static_cast<const char*>(w) + static_cast<size_t>(o + j) * w_row;
      const size_t block = static_cast<size_t>(b0 + bi);
      scales[j] = _cvtsh_ss(reinterpret_cast<const uint16_t*>(row)[block]);
      const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + quant_values_offset(n_in) + block * 16));
      alignas(16) uint8_t levels[32];  // the block's 32 levels in order
      _mm_store_si128(reinterpret_cast<__m128i*>(levels), _mm_and_si128(packed, low_mask));
      _mm_store_si128(reinterpret_cast<__m128i*>(levels + 16), _mm_and_si128(_mm_srli_epi16(packed, 4), low_mask));
      for (int step = 0; step < 8; ++step) std::memcpy(dst + step * 64 + j * 4, levels + step * 4, 4);
    }
    std::memcpy(dst + 8 * 64, scales, sizeof scales);
  }
}

// Where a panel's levels and scales for a tile of blocks are: a panel packed per call above (levels and
// float scales block by block) or a Q4_0_R16 panel (nibbles, f16 scales after every block's nibbles).
struct PanelTile {
  const uint8_t* values;
  const uint16_t* scales;  // Q4_0_R16 only
};

// y[r][o .. o + 16P) (+)= rows R of prepared x against P panels over `blocks` blocks from b0. kR16: the
// panels are Q4_0_R16's, whose step s holds the nibble bytes 4s..4s+3 of each row's block, low nibbles
// the levels of values 4s.., high ones of values 16 + 4s..; the packed panels' step s holds the levels of
// values 4s... Either way every level meets its own x value and the integer sums are the same.
template <int R, int P, bool kR16>
void micro_kernel(const float* x, size_t x_stride, int in, int b0, int blocks, const PanelTile* panels, float* y,
                  size_t ldy, int cols, bool accumulate) {
  const size_t n_in = static_cast<size_t>(in);
  __mmask16 masks[P];
  #pragma GCC unroll 4
  for (int p = 0; p < P; ++p) {
    const int c = std::clamp(cols - 16 * p, 0, 16);
    masks[p] = static_cast<__mmask16>(c == 16 ? 0xffffu : (1u << c) - 1u);
  }
  __m512 acc[R][P];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    #pragma GCC unroll 4
    for (int p = 0; p < P; ++p) {
      acc[r][p] = accumulate ? _mm512_maskz_loadu_ps(masks[p], y + static_cast<size_t>(r) * ldy + 16 * p)
                             : _mm512_setzero_ps();
    }
  }
  // Four bytes of row r's x from value i of the block on, broadcast to every lane.
  auto x_four = [&](int r, size_t block, int i) {
    int32_t four;
    std::memcpy(&four, reinterpret_cast<const int8_t*>(x + static_cast<size_t>(r) * x_stride) + block * 32 + i, 4);
    return _mm512_set1_epi32(four);
  };
  const __m512i low_mask = _mm512_set1_epi8(0x0f);
  for (int bi = 0; bi < blocks; ++bi) {
    const size_t block = static_cast<size_t>(b0 + bi);
    __m512i sums[R][P];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int32_t correction;  // stored among the floats: read by memcpy
      std::memcpy(&correction, x + static_cast<size_t>(r) * x_stride + n_in / 4 + n_in / 32 + block, sizeof correction);
      const __m512i start = _mm512_set1_epi32(correction);
      #pragma GCC unroll 4
      for (int p = 0; p < P; ++p) sums[r][p] = start;
    }
    if constexpr (kR16) {
      #pragma GCC unroll 4
      for (int step = 0; step < 4; ++step) {
        __m512i low[P], high[P];
        #pragma GCC unroll 4
        for (int p = 0; p < P; ++p) {
          _mm_prefetch(reinterpret_cast<const char*>(panels[p].values + static_cast<size_t>(bi) * 256 + step * 64 + kAheadBytes),
                       _MM_HINT_T0);
          const __m512i packed = _mm512_loadu_si512(panels[p].values + static_cast<size_t>(bi) * 256 + step * 64);
          low[p] = _mm512_and_si512(packed, low_mask);
          high[p] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_mask);
        }
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const __m512i x_low = x_four(r, block, 4 * step);
          const __m512i x_high = x_four(r, block, 16 + 4 * step);
          #pragma GCC unroll 4
          for (int p = 0; p < P; ++p) {
            sums[r][p] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(sums[r][p], low[p], x_low), high[p], x_high);
          }
        }
      }
    } else {
      #pragma GCC unroll 8
      for (int step = 0; step < 8; ++step) {
        __m512i wv[P];
        #pragma GCC unroll 4
        for (int p = 0; p < P; ++p) wv[p] = _mm512_loadu_si512(panels[p].values + static_cast<size_t>(bi) * kPanelBlockBytes + step * 64);
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const __m512i xb = x_four(r, block, 4 * step);
          #pragma GCC unroll 4
          for (int p = 0; p < P; ++p) sums[r][p] = _mm512_dpbusd_epi32(sums[r][p], wv[p], xb);
        }
      }
    }
    __m512 dw[P];
    #pragma GCC unroll 4
    for (int p = 0; p < P; ++p) {
      dw[p] = kR16 ? _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(panels[p].scales + bi * kPanelRows)))
                   : _mm512_loadu_ps(reinterpret_cast<const float*>(panels[p].values + static_cast<size_t>(bi) * kPanelBlockBytes + 8 * 64));
    }
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float* scales_x = x + static_cast<size_t>(r) * x_stride + n_in / 4;
      const __m512 dx = _mm512_set1_ps(scales_x[block]);
      #pragma GCC unroll 4
      for (int p = 0; p < P; ++p) {
        acc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r][p]), _mm512_mul_ps(dw[p], dx), acc[r][p]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    #pragma GCC unroll 4
    for (int p = 0; p < P; ++p) _mm512_mask_storeu_ps(y + static_cast<size_t>(r) * ldy + 16 * p, masks[p], acc[r][p]);
  }
}

using MicroKernel = void (*)(const float*, size_t, int, int, int, const PanelTile*, float*, size_t, int, bool);
template <int P, bool kR16>
constexpr MicroKernel kKernels[kMaxRows + 1] = {
    nullptr,                     micro_kernel<1, P, kR16>, micro_kernel<2, P, kR16>, micro_kernel<3, P, kR16>,
    micro_kernel<4, P, kR16>, micro_kernel<5, P, kR16>, micro_kernel<6, P, kR16>};

// Every row group of x against the panels of one tile of depth (blocks [b0, b0 + tile)), two panels at a
// time; panel(p) gives panel p's tile.
template <bool kR16, typename PanelOf>
void multiply_tile(const float* prepared, int rows, int in, int b0, int tile, int n_panels, int o_begin, int o_end,
                   PanelOf panel, float* y, size_t ldy) {
  const size_t x_stride = row_floats(in);
  for (int r0 = 0; r0 < rows; r0 += kMaxRows) {
    const int r_count = std::min(kMaxRows, rows - r0);
    const float* x_rows = prepared + static_cast<size_t>(r0) * x_stride;
    for (int p = 0; p < n_panels; p += 2) {
      const int o = o_begin + p * kPanelRows;
      const PanelTile tiles[2] = {panel(p), panel(std::min(p + 1, n_panels - 1))};
      float* y_block = y + static_cast<size_t>(r0) * ldy + static_cast<size_t>(o);
      const int cols = std::min(2 * kPanelRows, o_end - o);
      if (p + 1 < n_panels) {
        kKernels<2, kR16>[r_count](x_rows, x_stride, in, b0, tile, tiles, y_block, ldy, cols, b0 > 0);
      } else {
        kKernels<1, kR16>[r_count](x_rows, x_stride, in, b0, tile, tiles, y_block, ldy, cols, b0 > 0);
      }
    }
  }
}

}  // namespace

size_t q4_0_many_scratch(int rows, int in) { return static_cast<size_t>(rows) * row_floats(in); }

// The same prepared rows as the AVX2 panel kernels' (r16_panels_avx2.h), bit for bit, quantized with
// AVX-512: the scalar quantization was ~1% of a decode step (231k values per token at the 1B shape).
const float* q4_0_many_prepare(const float* x, int rows, int in, float* scratch) {
  prepare_panel_rows(x, rows, in, 8, scratch);
  return scratch;
}

void q4_0_many_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                    size_t ldy) {
  const int n_panels = (o_end - o_begin + kPanelRows - 1) / kPanelRows;
  const int blocks = in / 32;
  thread_local std::vector<uint8_t, AlignedAllocator<uint8_t>> packed;
  packed.resize(static_cast<size_t>(n_panels) * kTileBlocks * kPanelBlockBytes);
  for (int b0 = 0; b0 < blocks; b0 += kTileBlocks) {
    const int tile = std::min(kTileBlocks, blocks - b0);
    const size_t panel_bytes = static_cast<size_t>(tile) * kPanelBlockBytes;
    for (int p = 0; p < n_panels; ++p) {
      pack_panel(w, in, o_begin + p * kPanelRows, o_end, b0, tile, packed.data() + static_cast<size_t>(p) * panel_bytes);
    }
    multiply_tile<false>(prepared, rows, in, b0, tile, n_panels, o_begin, o_end, [&](int p) {
      return PanelTile{packed.data() + static_cast<size_t>(p) * panel_bytes, nullptr};
    }, y, ldy);
  }
}

void q4_0_r16_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                   size_t ldy) {
  const int n_panels = (o_end - o_begin) / kPanelRows;  // o_begin and o_end are whole panels
  const int blocks = in / 32;
  const size_t panel_bytes = q4_0_r16_panel_bytes(in);
  const auto* first = static_cast<const uint8_t*>(w) + static_cast<size_t>(o_begin / kPanelRows) * panel_bytes;
  // One group of rows (decode) streams each pair of panels whole; more rows go tile by tile so a tile
  // stays in cache for every group. The sums are the same either way (y holds them between tiles).
  const int tile_blocks = rows <= kMaxRows ? blocks : kTileBlocks;
  for (int b0 = 0; b0 < blocks; b0 += tile_blocks) {
    const int tile = std::min(tile_blocks, blocks - b0);
    multiply_tile<true>(prepared, rows, in, b0, tile, n_panels, o_begin, o_end, [&](int p) {
      const uint8_t* start = first + static_cast<size_t>(p) * panel_bytes;
      const auto* scales = reinterpret_cast<const uint16_t*>(start + static_cast<size_t>(blocks) * 256);
      return PanelTile{start + static_cast<size_t>(b0) * 256, scales + static_cast<size_t>(b0) * kPanelRows};
    }, y, ldy);
  }
}

}  // namespace llama31::kernels::avx512
