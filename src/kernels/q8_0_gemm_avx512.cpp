// AVX-512 VNNI matrix-matrix product of Q8_0 weights and int8 activations (prefill).
//
// x is quantized once per call (per block of 32, the same integers as scalar::quantize_activations_q8),
// kept signed, with each block's correction -128 * (sum of its q). Each chunk of output rows is repacked
// per tile of depth into panels of 16 rows, weights made unsigned (q + 128, an xor of the sign bit): for
// every block of 32 inputs, eight 64-byte steps whose lane j holds four consecutive weights of row j,
// then the block's 16 weight scales. One vpdpbusd (unsigned weights x signed activations) then adds four
// products to each of the 16 rows' sums for one row of x, whose four bytes are broadcast; the sums start
// from the row's correction, which removes the +128 exactly. Per block the exact integer sums are scaled
// by (weight scale * activation scale) into fp32 accumulators, so each output is the same sum of
// per-block terms in the same order as the scalar twin, and each row of y depends only on its row of x.
// While one tile is multiplied, the next tile's weight rows are prefetched: packing reads rows 2-8 KiB
// apart, which the hardware prefetcher does not follow, and it stalled on memory for ~10% of prefill.
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

constexpr int kPanelRows = 16;
constexpr int kTileBlocks = 16;  // blocks of 32 inputs per packed tile (512 inputs)
constexpr int kMaxRows = 6;      // rows of x per micro-kernel: 2 panels x 6 rows = 12 integer accumulators
// Bytes of one panel's block: 8 steps x 64 bytes, then 16 float scales.
constexpr size_t kPanelBlockBytes = 8 * 64 + 64;

// Prepared x per row: in bytes of q, then in / 32 float scales, then in / 32 int32 corrections.
size_t row_floats(int in) { return static_cast<size_t>(in) / 4 + 2 * (static_cast<size_t>(in) / 32); }

// Packs rows [o, o + 16) (zeros past o_end) for blocks [b0, b0 + blocks) into one panel, row by row so
// each row's bytes are read in order.
void pack_panel(const void* w, int in, int o, int o_end, int b0, int blocks, uint8_t* panel) {
  const size_t w_row = row_bytes(DType::Q8_0, in);
  const __m256i sign_bits = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int j = 0; j < kPanelRows; ++j) {
    if (o + j >= o_end) {
      for (int bi = 0; bi < blocks; ++bi) {
        uint8_t* dst = panel + static_cast<size_t>(bi) * kPanelBlockBytes;
        for (int step = 0; step < 8; ++step) std::memset(dst + step * 64 + j * 4, 0x80, 4);
        std::memset(dst + 8 * 64 + j * 4, 0, 4);
      }
      continue;
    }
    const char* row = static_cast<const char*>(w) + static_cast<size_t>(o + j) * w_row;
    const auto* scales = reinterpret_cast<const uint16_t*>(row) + b0;
    const char* values = row + quant_values_offset(static_cast<size_t>(in)) + static_cast<size_t>(b0) * 32;
    for (int bi = 0; bi < blocks; ++bi) {
      uint8_t* dst = panel + static_cast<size_t>(bi) * kPanelBlockBytes;
      alignas(32) uint32_t words[8];
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + static_cast<size_t>(bi) * 32));
      _mm256_store_si256(reinterpret_cast<__m256i*>(words), _mm256_xor_si256(v, sign_bits));
      for (int step = 0; step < 8; ++step) std::memcpy(dst + step * 64 + j * 4, &words[step], 4);
      const float scale = _cvtsh_ss(scales[bi]);
      std::memcpy(dst + 8 * 64 + j * 4, &scale, 4);
    }
  }
}

// Brings the weights of rows [o_first, o_last) x blocks [b0, b0 + blocks) into L2 a few lines at a time,
// spread over the multiplication of the tile before them: issued all at once, most prefetches found the
// miss queues full and were dropped.
class TilePrefetcher {
 public:
  TilePrefetcher(const void* w, int in, int o_first, int o_last, int b0, int blocks)
      : w_(static_cast<const char*>(w)), w_row_(row_bytes(DType::Q8_0, in)),
        values_offset_(quant_values_offset(static_cast<size_t>(in)) + static_cast<size_t>(b0) * 32),
        scales_offset_(static_cast<size_t>(b0) * 2), lines_per_row_(blocks / 2 + 1), row_(o_first), last_(o_last) {}

  // Prefetches the next `count` cache lines of the tile (a row's scales, then its values).
  void advance(int count) {
    for (; count > 0 && row_ < last_; --count) {
      const char* row = w_ + static_cast<size_t>(row_) * w_row_;
      _mm_prefetch(line_ == 0 ? row + scales_offset_ : row + values_offset_ + static_cast<size_t>(line_ - 1) * 64,
                   _MM_HINT_T1);
      if (++line_ == lines_per_row_) {
        line_ = 0;
        ++row_;
      }
    }
  }
  int lines_left() const { return (last_ - row_) * lines_per_row_ - line_; }

 private:
  const char* w_;
  size_t w_row_, values_offset_, scales_offset_;
  int lines_per_row_, row_, last_, line_ = 0;
};

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
      const auto* corrections = reinterpret_cast<const int32_t*>(x + static_cast<size_t>(r) * x_stride + n_in / 4 + n_in / 32);
      const __m512i start = _mm512_set1_epi32(corrections[block]);
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
        std::memcpy(&four, reinterpret_cast<const uint8_t*>(x + static_cast<size_t>(r) * x_stride) + block * 32 + step * 4, 4);
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

size_t q8_0_many_scratch(int rows, int in) { return static_cast<size_t>(rows) * row_floats(in); }

const float* q8_0_many_prepare(const float* x, int rows, int in, float* scratch) {
  const size_t n_in = static_cast<size_t>(in);
  for (int r = 0; r < rows; ++r) {
    float* row = scratch + static_cast<size_t>(r) * row_floats(in);
    quantize_activations_q8(x + static_cast<size_t>(r) * n_in, in, reinterpret_cast<int8_t*>(row), row + n_in / 4,
                            reinterpret_cast<int32_t*>(row + n_in / 4 + n_in / 32));
    auto* corrections = reinterpret_cast<int32_t*>(row + n_in / 4 + n_in / 32);
    for (size_t b = 0; b < n_in / 32; ++b) corrections[b] *= -128;
  }
  return scratch;
}

void q8_0_many_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
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
    // The next tile, or after the last one the chunk after this one, which a static schedule usually
    // gives this thread next.
    TilePrefetcher next = b0 + tile < blocks
                              ? TilePrefetcher(w, in, o_begin, o_end, b0 + tile, std::min(kTileBlocks, blocks - b0 - tile))
                              : TilePrefetcher(w, in, o_end, o_end + (o_end - o_begin), 0, std::min(kTileBlocks, blocks));
    const int groups = (rows + kMaxRows - 1) / kMaxRows;
    const int lines_per_group = (next.lines_left() + groups - 1) / groups;
    for (int r0 = 0; r0 < rows; r0 += kMaxRows) {
      next.advance(lines_per_group);
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
