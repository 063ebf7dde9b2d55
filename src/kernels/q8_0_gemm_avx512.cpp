// AVX-512 VNNI matrix-matrix product of Q8_0 weights and int8 activations (prefill), and every product
// of Q8_0_R16 weights (util/dtype.h), which hold the panels below once for all calls.
//
// x is quantized once per call (per block of 32, the same integers as scalar::quantize_activations_q8),
// kept signed, with each block's correction -128 * (sum of its q). The weights go in panels of 16 rows,
// made unsigned (q + 128, an xor of the sign bit): for every block of 32 inputs, eight 64-byte steps whose
// lane j holds four consecutive weights of row j, and apart from them the block's 16 f16 weight scales.
// Q8_0_R16 is stored that way; plain Q8_0 is repacked per chunk of rows and tile of depth. One vpdpbusd
// (unsigned weights x signed activations) then adds four products to each of the 16 rows' sums for one
// row of x, whose four bytes are broadcast; the sums start from the row's correction, which removes the
// +128 exactly. Per block the exact integer sums are scaled by (weight scale * activation scale) into
// fp32 accumulators, so each output is the same sum of per-block terms in the same order whichever the
// layout and however many rows, and each row of y depends only on its row of x.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/aligned_buffer.h"
#include "kernels/q8_0_avx512.h"
#include "kernels/quantize_avx512.h"
#include "util/dtype.h"

namespace llama31::kernels::avx512 {
namespace {

constexpr int kPanelRows = kQ8_0PanelRows;
constexpr int kTileBlocks = 16;  // blocks of 32 inputs per tile (512 inputs)
constexpr int kMaxRows = 6;      // rows of x per micro-kernel: 2 panels x 6 rows = 12 integer accumulators
constexpr size_t kStepBytes = 64;
constexpr size_t kBlockValueBytes = 8 * kStepBytes;  // one block of a panel's values
constexpr size_t kBlockScaleBytes = kPanelRows * 2;  // one block of a panel's f16 scales
// Where a panel's values and scales for the tile of blocks from b0 are.
struct PanelTile {
  const uint8_t* values;
  const uint16_t* scales;
};

// Prepared x per row: in bytes of q, then in / 32 float scales, then in / 32 int32 corrections.
size_t row_floats(int in) { return static_cast<size_t>(in) / 4 + 2 * (static_cast<size_t>(in) / 32); }

// Packs rows [o, o + 16) (zeros past o_end) for blocks [b0, b0 + blocks) into one panel tile: the
// blocks' values, then their scales. Row by row, so each row's bytes are read in order.
PanelTile pack_panel(const void* w, int in, int o, int o_end, int b0, int blocks, uint8_t* panel) {
  const size_t w_row = row_bytes(DType::Q8_0, in);
  uint8_t* scales = panel + static_cast<size_t>(blocks) * kBlockValueBytes;
  const __m256i sign_bits = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int j = 0; j < kPanelRows; ++j) {
    if (o + j >= o_end) {
      for (int bi = 0; bi < blocks; ++bi) {
        uint8_t* dst = panel + static_cast<size_t>(bi) * kBlockValueBytes;
        for (int step = 0; step < 8; ++step) std::memset(dst + step * kStepBytes + j * 4, 0x80, 4);
        std::memset(scales + static_cast<size_t>(bi) * kBlockScaleBytes + j * 2, 0, 2);
      }
      continue;
    }
    const char* row = static_cast<const char*>(w) + static_cast<size_t>(o + j) * w_row;
    const char* row_scales = row + static_cast<size_t>(b0) * 2;
    const char* values = row + quant_values_offset(static_cast<size_t>(in)) + static_cast<size_t>(b0) * 32;
    for (int bi = 0; bi < blocks; ++bi) {
      uint8_t* dst = panel + static_cast<size_t>(bi) * kBlockValueBytes;
      alignas(32) uint32_t words[8];
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + static_cast<size_t>(bi) * 32));
      _mm256_store_si256(reinterpret_cast<__m256i*>(words), _mm256_xor_si256(v, sign_bits));
      for (int step = 0; step < 8; ++step) std::memcpy(dst + step * kStepBytes + j * 4, &words[step], 4);
      std::memcpy(scales + static_cast<size_t>(bi) * kBlockScaleBytes + j * 2, row_scales + bi * 2, 2);
    }
  }
  return {panel, reinterpret_cast<const uint16_t*>(scales)};
}

// y[r][o .. o + 16P) (+)= rows R of prepared x against P packed panels over `blocks` blocks from b0.
template <int R, int P>
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
  for (int bi = 0; bi < blocks; ++bi) {
    const size_t block = static_cast<size_t>(b0 + bi);
    __m512i sums[R][P];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const auto* corrections = reinterpret_cast<const int32_t*>(x + static_cast<size_t>(r) * x_stride + n_in / 4 + n_in / 32);
      const __m512i start = _mm512_set1_epi32(corrections[block]);
      #pragma GCC unroll 4
      for (int p = 0; p < P; ++p) sums[r][p] = start;
    }
    #pragma GCC unroll 8
    for (int step = 0; step < 8; ++step) {
      __m512i wv[P];
      #pragma GCC unroll 4
      for (int p = 0; p < P; ++p) {
        wv[p] = _mm512_loadu_si512(panels[p].values + static_cast<size_t>(bi) * kBlockValueBytes + step * kStepBytes);
      }
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        int32_t four;
        std::memcpy(&four, reinterpret_cast<const uint8_t*>(x + static_cast<size_t>(r) * x_stride) + block * 32 + step * 4, 4);
        const __m512i xb = _mm512_set1_epi32(four);
        #pragma GCC unroll 4
        for (int p = 0; p < P; ++p) sums[r][p] = _mm512_dpbusd_epi32(sums[r][p], wv[p], xb);
      }
    }
    __m512 dw[P];
    #pragma GCC unroll 4
    for (int p = 0; p < P; ++p) {
      dw[p] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(panels[p].scales + bi * kPanelRows)));
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
template <int P>
constexpr MicroKernel kKernels[kMaxRows + 1] = {nullptr,           micro_kernel<1, P>, micro_kernel<2, P>,
                                                micro_kernel<3, P>, micro_kernel<4, P>, micro_kernel<5, P>,
                                                micro_kernel<6, P>};

}  // namespace

size_t q8_0_many_scratch(int rows, int in) { return static_cast<size_t>(rows) * row_floats(in); }

const float* q8_0_many_prepare(const float* x, int rows, int in, float* scratch) {
  prepare_panel_rows(x, rows, in, 128, scratch);
  return scratch;
}

namespace {

// Every row group of x against the panel tiles of one tile of depth (blocks [b0, b0 + tile)), two panels
// at a time; panel(p) gives panel p's tile.
template <typename PanelOf>
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
        kKernels<2>[r_count](x_rows, x_stride, in, b0, tile, tiles, y_block, ldy, cols, b0 > 0);
      } else {
        kKernels<1>[r_count](x_rows, x_stride, in, b0, tile, tiles, y_block, ldy, cols, b0 > 0);
      }
    }
  }
}

}  // namespace

void q8_0_many_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                    size_t ldy) {
  const int n_panels = (o_end - o_begin + kPanelRows - 1) / kPanelRows;
  const int blocks = in / 32;
  thread_local std::vector<uint8_t, AlignedAllocator<uint8_t>> packed;
  packed.resize(static_cast<size_t>(n_panels) * kTileBlocks * (kBlockValueBytes + kBlockScaleBytes));
  thread_local std::vector<PanelTile> tiles;
  tiles.resize(static_cast<size_t>(n_panels));
  for (int b0 = 0; b0 < blocks; b0 += kTileBlocks) {
    const int tile = std::min(kTileBlocks, blocks - b0);
    const size_t tile_bytes = static_cast<size_t>(tile) * (kBlockValueBytes + kBlockScaleBytes);
    for (int p = 0; p < n_panels; ++p) {
      tiles[static_cast<size_t>(p)] = pack_panel(w, in, o_begin + p * kPanelRows, o_end, b0, tile,
                            packed.data() + static_cast<size_t>(p) * tile_bytes);
    }
    multiply_tile(prepared, rows, in, b0, tile, n_panels, o_begin, o_end, [&](int p) { return tiles[static_cast<size_t>(p)]; }, y, ldy);
  }
}

void q8_0_r16_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                   size_t ldy) {
  const int n_panels = (o_end - o_begin) / kPanelRows;  // o_begin and o_end are whole panels
  const int blocks = in / 32;
  const size_t panel_bytes = q8_0_r16_panel_bytes(in);
  const auto* first = static_cast<const uint8_t*>(w) + static_cast<size_t>(o_begin / kPanelRows) * panel_bytes;
  // One group of rows (decode) streams each pair of panels whole; more rows go tile by tile so a tile
  // stays in cache for every group. The sums are the same either way (y holds them between tiles).
  const int tile_blocks = rows <= kMaxRows ? blocks : kTileBlocks;
  for (int b0 = 0; b0 < blocks; b0 += tile_blocks) {
    const int tile = std::min(tile_blocks, blocks - b0);
    const auto panel = [&](int p) {
      const uint8_t* start = first + static_cast<size_t>(p) * panel_bytes;
      const auto* scales = reinterpret_cast<const uint16_t*>(start + static_cast<size_t>(blocks) * kBlockValueBytes);
      return PanelTile{start + static_cast<size_t>(b0) * kBlockValueBytes, scales + static_cast<size_t>(b0) * kPanelRows};
    };
    multiply_tile(prepared, rows, in, b0, tile, n_panels, o_begin, o_end, panel, y, ldy);
  }
}

}  // namespace llama31::kernels::avx512
