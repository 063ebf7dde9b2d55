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
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/aligned_buffer.h"
#include "kernels/q4_0_avx512.h"
#include "kernels/r16_panels_avx2.h"
#include "util/dtype.h"

namespace llama31::kernels::avx512 {
namespace {

constexpr int kPanelRows = 16;
constexpr int kTileBlocks = 16;  // blocks of 32 inputs per packed tile (512 inputs)
constexpr int kMaxRows = 6;      // rows of x per micro-kernel: 2 panels x 6 rows = 12 integer accumulators
// Bytes of one panel's block: 8 steps x 64 bytes of levels, 16 float scales.
constexpr size_t kPanelBlockBytes = 8 * 64 + 64;

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

// y[r][o .. o + 16P) (+)= rows R of prepared x against P packed panels over `blocks` blocks from b0.
template <int R, int P>
void micro_kernel(const float* x, size_t x_stride, int in, int b0, int blocks, const uint8_t* const* panels,
                  float* y, size_t ldy, int cols, bool accumulate) {
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
      int32_t correction;  // stored among the floats: read by memcpy
      std::memcpy(&correction, x + static_cast<size_t>(r) * x_stride + n_in / 4 + n_in / 32 + block, sizeof correction);
      const __m512i start = _mm512_set1_epi32(correction);
      #pragma GCC unroll 4
      for (int p = 0; p < P; ++p) sums[r][p] = start;
    }
    #pragma GCC unroll 8
    for (int step = 0; step < 8; ++step) {
      __m512i wv[P];
      #pragma GCC unroll 4
      for (int p = 0; p < P; ++p) wv[p] = _mm512_loadu_si512(panels[p] + static_cast<size_t>(bi) * kPanelBlockBytes + step * 64);
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        int32_t four;
        std::memcpy(&four, reinterpret_cast<const int8_t*>(x + static_cast<size_t>(r) * x_stride) + block * 32 + step * 4, 4);
        const __m512i xb = _mm512_set1_epi32(four);
        #pragma GCC unroll 4
        for (int p = 0; p < P; ++p) sums[r][p] = _mm512_dpbusd_epi32(sums[r][p], wv[p], xb);
      }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float* scales_x = x + static_cast<size_t>(r) * x_stride + n_in / 4;
      const __m512 dx = _mm512_set1_ps(scales_x[block]);
      #pragma GCC unroll 4
      for (int p = 0; p < P; ++p) {
        const __m512 dw = _mm512_loadu_ps(reinterpret_cast<const float*>(panels[p] + static_cast<size_t>(bi) * kPanelBlockBytes + 8 * 64));
        acc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r][p]), _mm512_mul_ps(dw, dx), acc[r][p]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    #pragma GCC unroll 4
    for (int p = 0; p < P; ++p) _mm512_mask_storeu_ps(y + static_cast<size_t>(r) * ldy + 16 * p, masks[p], acc[r][p]);
  }
}

using MicroKernel = void (*)(const float*, size_t, int, int, int, const uint8_t* const*, float*, size_t, int, bool);
template <int P>
constexpr MicroKernel kKernels[kMaxRows + 1] = {nullptr,           micro_kernel<1, P>, micro_kernel<2, P>,
                                                micro_kernel<3, P>, micro_kernel<4, P>, micro_kernel<5, P>,
                                                micro_kernel<6, P>};

}  // namespace

size_t q4_0_many_scratch(int rows, int in) { return static_cast<size_t>(rows) * row_floats(in); }

// The same prepared rows as the AVX2 panel kernels' (r16_panels_avx2.h), which AVX-512 CPUs run too.
const float* q4_0_many_prepare(const float* x, int rows, int in, float* scratch) {
  return avx2::r16_prepare(x, rows, in, scratch);
}

void q4_0_many_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                    size_t ldy) {
  const int n_panels = (o_end - o_begin + kPanelRows - 1) / kPanelRows;
  const int blocks = in / 32;
  const size_t x_stride = row_floats(in);
  thread_local std::vector<uint8_t, AlignedAllocator<uint8_t>> packed;
  packed.resize(static_cast<size_t>(n_panels) * kTileBlocks * kPanelBlockBytes);
  for (int b0 = 0; b0 < blocks; b0 += kTileBlocks) {
    const int tile = std::min(kTileBlocks, blocks - b0);
    const size_t panel_bytes = static_cast<size_t>(tile) * kPanelBlockBytes;
    for (int p = 0; p < n_panels; ++p) {
      pack_panel(w, in, o_begin + p * kPanelRows, o_end, b0, tile, packed.data() + static_cast<size_t>(p) * panel_bytes);
    }
    for (int r0 = 0; r0 < rows; r0 += kMaxRows) {
      const int r_count = std::min(kMaxRows, rows - r0);
      const float* x_rows = prepared + static_cast<size_t>(r0) * x_stride;
      for (int p = 0; p < n_panels; p += 2) {
        const int o = o_begin + p * kPanelRows;
        const uint8_t* panels[2] = {packed.data() + static_cast<size_t>(p) * panel_bytes,
                                    packed.data() + static_cast<size_t>(std::min(p + 1, n_panels - 1)) * panel_bytes};
        float* y_block = y + static_cast<size_t>(r0) * ldy + static_cast<size_t>(o);
        const int cols = std::min(2 * kPanelRows, o_end - o);
        if (p + 1 < n_panels) {
          kKernels<2>[r_count](x_rows, x_stride, in, b0, tile, panels, y_block, ldy, cols, b0 > 0);
        } else {
          kKernels<1>[r_count](x_rows, x_stride, in, b0, tile, panels, y_block, ldy, cols, b0 > 0);
        }
      }
    }
  }
}

}  // namespace llama31::kernels::avx512
