// AVX-512 VNNI matrix-matrix product of K-quant weights (Q4_K, Q5_K, Q6_K) and Q8_K activations (prefill).
//
// x is quantized once per call into natural-order records (kquant.h). Each chunk of output rows is unpacked
// a tile of two super-blocks (512 inputs) at a time into panels of 16 rows, per super-block: 64 steps of 64
// bytes whose lane j holds four consecutive levels (unsigned, 0..63) of row j (16 x 16 words transposed in
// registers), then per group of inputs sharing a scale (Q4_K / Q5_K: eight
// sub-blocks of 32; Q6_K: sixteen groups of 16) the 16 rows' integer scales, Q4_K / Q5_K's mins as 16-bit
// pairs, and the rows' d (and dmin) as floats. One vpdpbusd (levels unsigned, x signed, its four bytes
// broadcast) adds four products to each of the 16 rows' sums for one row of x. Per group the exact sums
// (Q6_K's start at -32 * the group's sum of x, which makes them sums of (q - 32) * x) are multiplied by the
// scales and added into an integer isum; Q4_K / Q5_K's imin (mins times the sub-block sums of x) takes four
// vpdpwssd. Per super-block isum and imin are scaled by (d * dx) and (dmin * dx) into fp32 accumulators, so
// each row of y depends only on its row of x, and in the same order whatever the number of rows. While one
// tile is multiplied, the next tile's weight rows are prefetched (BlockPrefetcher).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/aligned_buffer.h"
#include "kernels/kquant.h"
#include "kernels/kquant_avx512.h"
#include "util/kquant.h"

namespace llama31::kernels::avx512 {
namespace {

constexpr int kPanelRows = 16;
constexpr int kMaxRows = 4;  // rows of x per micro-kernel: 2 panels x 4 rows = 8 each of sums, isums, accumulators
constexpr int kTileBlocks = 2;  // super-blocks per packed tile (512 inputs): the accumulators stay in registers

// Where a panel's super-block keeps what: the 64 steps of levels, then per group 16 int32 scales, then (Q4_K,
// Q5_K) four vectors of mins pairs and the dmin floats, and the d floats.
template <DType T>
struct PanelLayout {
  static constexpr bool kMins = T != DType::Q6_K;
  static constexpr int kGroups = kMins ? 8 : 16;
  static constexpr int kStepsPerGroup = 64 / kGroups;
  static constexpr size_t kScales = 64 * 64;
  static constexpr size_t kMinPairs = kScales + 64 * kGroups;
  static constexpr size_t kD = kMinPairs + (kMins ? 4 * 64 : 0);
  static constexpr size_t kDmin = kD + 64;
  static constexpr size_t kBytes = kD + (kMins ? 128 : 64);
};

// In place: v[i] holds row i of a 16 x 16 block of 32-bit words on entry and column i on return (the same
// steps as matmul_avx512.cpp's fp32 transpose).
inline void transpose16x16(__m512i v[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
  }
  __m512i s[16];  // s[4g+m], lane L: rows 4g..4g+3 of column 4L+m
  for (int g = 0; g < 4; ++g) {
    s[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    s[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    s[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    s[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int m = 0; m < 4; ++m) {
    const __m512i p = _mm512_shuffle_i32x4(s[m], s[4 + m], 0x44);
    const __m512i q = _mm512_shuffle_i32x4(s[m], s[4 + m], 0xee);
    const __m512i r = _mm512_shuffle_i32x4(s[8 + m], s[12 + m], 0x44);
    const __m512i u = _mm512_shuffle_i32x4(s[8 + m], s[12 + m], 0xee);
    v[m] = _mm512_shuffle_i32x4(p, r, 0x88);
    v[4 + m] = _mm512_shuffle_i32x4(p, r, 0xdd);
    v[8 + m] = _mm512_shuffle_i32x4(q, u, 0x88);
    v[12 + m] = _mm512_shuffle_i32x4(q, u, 0xdd);
  }
}

// The 256 levels of one super-block in input order (util/kquant.h has the bit layouts).
template <DType T>
void unpack_levels(const uint8_t* block, uint8_t* levels) {
  const __m256i low_mask = _mm256_set1_epi8(0x0f);
  auto store = [&](size_t at, __m256i v) { _mm256_store_si256(reinterpret_cast<__m256i*>(levels + at), v); };
  if constexpr (T == DType::Q6_K) {
    const __m256i high_mask = _mm256_set1_epi8(0x30);
    for (size_t half = 0; half < 2; ++half) {
      const uint8_t* ql = block + 64 * half;
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kquant::kQ6KQh + 32 * half));
      auto level = [&](__m256i low, __m256i high) {
        return _mm256_or_si256(_mm256_and_si256(low, low_mask), _mm256_and_si256(high, high_mask));
      };
      store(128 * half, level(a, _mm256_slli_epi16(qh, 4)));
      store(128 * half + 32, level(b, _mm256_slli_epi16(qh, 2)));
      store(128 * half + 64, level(_mm256_srli_epi16(a, 4), qh));
      store(128 * half + 96, level(_mm256_srli_epi16(b, 4), _mm256_srli_epi16(qh, 2)));
    }
  } else {
    constexpr bool kFive = T == DType::Q5_K;
    const uint8_t* qs = block + (kFive ? kquant::kQ5KQs : kquant::kQ4KQs);
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kquant::kQ5KQh));
    const __m256i sixteen = _mm256_set1_epi8(16);
    for (int c = 0; c < 4; ++c) {
      const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
      __m256i low = _mm256_and_si256(packed, low_mask);
      __m256i high = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_mask);
      if constexpr (kFive) {  // bit 2c of qh[l] for value 64c + l, bit 2c + 1 for 64c + 32 + l
        low = _mm256_mask_add_epi8(low, _mm256_test_epi8_mask(qh, _mm256_set1_epi8(static_cast<char>(1 << (2 * c)))),
                                   low, sixteen);
        high = _mm256_mask_add_epi8(high, _mm256_test_epi8_mask(qh, _mm256_set1_epi8(static_cast<char>(2 << (2 * c)))),
                                    high, sixteen);
      }
      store(static_cast<size_t>(64 * c), low);
      store(static_cast<size_t>(64 * c + 32), high);
    }
  }
}

// Packs rows [o, o + 16) (zeros past o_end) of super-block `block` into one panel super-block.
template <DType T>
void pack_panel(const void* w, int in, int o, int o_end, size_t block, uint8_t* dst) {
  using L = PanelLayout<T>;
  const size_t w_row = row_bytes(T, in);
  alignas(64) uint8_t levels[kPanelRows][256];
  alignas(64) int32_t scales[L::kGroups][kPanelRows] = {};
  alignas(64) int32_t min_pairs[4][kPanelRows] = {};
  alignas(64) float d[kPanelRows] = {}, dmin[kPanelRows] = {};
  for (int j = 0; j < kPanelRows; ++j) {
    if (o + j >= o_end) {
      std::memset(levels[j], 0, sizeof levels[j]);
      continue;
    }
    const uint8_t* src = static_cast<const uint8_t*>(w) + static_cast<size_t>(o + j) * w_row + block * kquant_block_bytes(T);
    unpack_levels<T>(src, levels[j]);
    if constexpr (T == DType::Q6_K) {
      const auto* group_scales = reinterpret_cast<const int8_t*>(src + kquant::kQ6KScales);
      for (int g = 0; g < 16; ++g) scales[g][j] = group_scales[g];
      uint16_t bits;
      std::memcpy(&bits, src + kquant::kQ6KD, 2);
      d[j] = _cvtsh_ss(bits);
    } else {
      uint64_t sc, mn;
      kquant::scales_mins(src + kquant::kQ4KScales, sc, mn);
      for (int g = 0; g < 8; ++g) scales[g][j] = static_cast<int32_t>((sc >> (8 * g)) & 0xFF);
      for (int k = 0; k < 4; ++k) {
        min_pairs[k][j] = static_cast<int32_t>(((mn >> (16 * k)) & 0xFF) | (((mn >> (16 * k + 8)) & 0xFF) << 16));
      }
      uint16_t bits[2];
      std::memcpy(bits, src, 4);
      d[j] = _cvtsh_ss(bits[0]);
      dmin[j] = _cvtsh_ss(bits[1]);
    }
  }
  for (int s0 = 0; s0 < 64; s0 += 16) {  // steps s0..s0+15: words s0.. of each row, transposed
    __m512i v[16];
    for (int j = 0; j < kPanelRows; ++j) v[j] = _mm512_load_si512(levels[j] + 4 * s0);
    transpose16x16(v);
    for (int s = 0; s < 16; ++s) _mm512_store_si512(dst + static_cast<size_t>(s0 + s) * 64, v[s]);
  }
  std::memcpy(dst + L::kScales, scales, sizeof scales);
  std::memcpy(dst + L::kD, d, sizeof d);
  if constexpr (L::kMins) {
    std::memcpy(dst + L::kMinPairs, min_pairs, sizeof min_pairs);
    std::memcpy(dst + L::kDmin, dmin, sizeof dmin);
  }
}

// Brings `bytes` from `offset` of rows [first, last) (the next tile's super-blocks) into L2 a few lines at a
// time, spread over the multiplication of the tile before it: packing reads rows a row's length apart, which the hardware
// prefetcher does not follow, and waited on memory for most of its time.
class BlockPrefetcher {
 public:
  BlockPrefetcher(const void* w, size_t w_row, size_t offset, size_t bytes, int first, int last)
      : w_(static_cast<const char*>(w)), w_row_(w_row), offset_(offset),
        lines_per_row_(static_cast<int>((bytes + 63) / 64)), row_(first), last_(last) {}

  void advance(int count) {
    for (; count > 0 && row_ < last_; --count) {
      _mm_prefetch(w_ + static_cast<size_t>(row_) * w_row_ + offset_ + static_cast<size_t>(line_) * 64, _MM_HINT_T1);
      if (++line_ == lines_per_row_) {
        line_ = 0;
        ++row_;
      }
    }
  }
  int lines_left() const { return (last_ - row_) * lines_per_row_ - line_; }

 private:
  const char* w_;
  size_t w_row_, offset_;
  int lines_per_row_, row_, last_, line_ = 0;
};

// y[r][o .. o + 16P) (+)= R rows of records (blocks b0 .. b0 + blocks of each) against P packed panels of
// as many super-blocks each; the accumulators stay in registers over the tile.
template <DType T, int R, int P>
void micro_kernel(const float* x, size_t x_stride, size_t b0, int blocks, const uint8_t* const* panels, float* y,
                  size_t ldy, int cols, bool accumulate) {
  using L = PanelLayout<T>;
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
  for (int t = 0; t < blocks; ++t) {
    const KquantActivations* records[R];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      records[r] = reinterpret_cast<const KquantActivations*>(x + static_cast<size_t>(r) * x_stride) + b0 + static_cast<size_t>(t);
    }
    const uint8_t* panel[P];
    #pragma GCC unroll 4
    for (int p = 0; p < P; ++p) panel[p] = panels[p] + static_cast<size_t>(t) * L::kBytes;
    __m512i isum[R][P];
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      #pragma GCC unroll 4
      for (int p = 0; p < P; ++p) isum[r][p] = _mm512_setzero_si512();
    }
    for (int g = 0; g < L::kGroups; ++g) {
      __m512i sums[R][P];
      #pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512i start = L::kMins ? _mm512_setzero_si512() : _mm512_set1_epi32(records[r]->starts[g]);
        #pragma GCC unroll 4
        for (int p = 0; p < P; ++p) sums[r][p] = start;
      }
      #pragma GCC unroll 8
      for (int s = 0; s < L::kStepsPerGroup; ++s) {
        const int step = g * L::kStepsPerGroup + s;
        __m512i wv[P];
        #pragma GCC unroll 4
        for (int p = 0; p < P; ++p) wv[p] = _mm512_load_si512(panel[p] + static_cast<size_t>(step) * 64);
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          int32_t four;
          std::memcpy(&four, records[r]->q + 4 * step, 4);
          const __m512i xb = _mm512_set1_epi32(four);
          #pragma GCC unroll 4
          for (int p = 0; p < P; ++p) sums[r][p] = _mm512_dpbusd_epi32(sums[r][p], wv[p], xb);
        }
      }
      #pragma GCC unroll 4
      for (int p = 0; p < P; ++p) {
        const __m512i scale = _mm512_load_si512(panel[p] + L::kScales + static_cast<size_t>(g) * 64);
        #pragma GCC unroll 8
        for (int r = 0; r < R; ++r) isum[r][p] = _mm512_add_epi32(isum[r][p], _mm512_mullo_epi32(sums[r][p], scale));
      }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 dx = _mm512_set1_ps(records[r]->d);
      #pragma GCC unroll 4
      for (int p = 0; p < P; ++p) {
        const __m512 d = _mm512_load_ps(reinterpret_cast<const float*>(panel[p] + L::kD));
        acc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][p]), _mm512_mul_ps(d, dx), acc[r][p]);
        if constexpr (L::kMins) {
          __m512i imin = _mm512_setzero_si512();
          #pragma GCC unroll 4
          for (int k = 0; k < 4; ++k) {
            int32_t pair;  // the sums of x over sub-blocks 2k and 2k + 1, as 16-bit halves
            std::memcpy(&pair, records[r]->sums + 2 * k, 4);
            imin = _mm512_dpwssd_epi32(imin, _mm512_load_si512(panel[p] + L::kMinPairs + static_cast<size_t>(k) * 64),
                                       _mm512_set1_epi32(pair));
          }
          const __m512 dmin = _mm512_load_ps(reinterpret_cast<const float*>(panel[p] + L::kDmin));
          acc[r][p] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(imin), _mm512_mul_ps(dmin, dx), acc[r][p]);
        }
      }
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    #pragma GCC unroll 4
    for (int p = 0; p < P; ++p) _mm512_mask_storeu_ps(y + static_cast<size_t>(r) * ldy + 16 * p, masks[p], acc[r][p]);
  }
}

using MicroKernel = void (*)(const float*, size_t, size_t, int, const uint8_t* const*, float*, size_t, int, bool);
template <DType T, int P>
constexpr MicroKernel kKernels[kMaxRows + 1] = {nullptr, micro_kernel<T, 1, P>, micro_kernel<T, 2, P>,
                                                micro_kernel<T, 3, P>, micro_kernel<T, 4, P>};

template <DType T>
void many_rows_typed(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                     size_t ldy) {
  using L = PanelLayout<T>;
  const int n_panels = (o_end - o_begin + kPanelRows - 1) / kPanelRows;
  const size_t blocks = static_cast<size_t>(in) / 256;
  const size_t x_stride = kquant_row_floats(in);
  const size_t w_row = row_bytes(T, in);
  const size_t block_bytes = kquant_block_bytes(T);
  thread_local std::vector<uint8_t, AlignedAllocator<uint8_t>> packed;
  packed.resize(static_cast<size_t>(n_panels) * kTileBlocks * L::kBytes);
  for (size_t b0 = 0; b0 < blocks; b0 += kTileBlocks) {
    const int tile = static_cast<int>(std::min<size_t>(kTileBlocks, blocks - b0));
    const size_t panel_bytes = static_cast<size_t>(tile) * L::kBytes;  // panel p: its tile super-blocks in order
    for (int p = 0; p < n_panels; ++p) {
      for (int t = 0; t < tile; ++t) {
        pack_panel<T>(w, in, o_begin + p * kPanelRows, o_end, b0 + static_cast<size_t>(t),
                      packed.data() + static_cast<size_t>(p) * panel_bytes + static_cast<size_t>(t) * L::kBytes);
      }
    }
    // The next tile of these rows or, after the last, the first of the chunk after this one (which a static
    // schedule usually gives this thread next).
    const size_t next_b0 = b0 + kTileBlocks < blocks ? b0 + kTileBlocks : 0;
    const size_t next_bytes = std::min<size_t>(kTileBlocks, blocks - next_b0) * block_bytes;
    BlockPrefetcher next = next_b0 > 0 ? BlockPrefetcher(w, w_row, next_b0 * block_bytes, next_bytes, o_begin, o_end)
                                       : BlockPrefetcher(w, w_row, 0, next_bytes, o_end, 2 * o_end - o_begin);
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
          kKernels<T, 2>[r_count](x_rows, x_stride, b0, tile, panels, y_block, ldy, cols, b0 > 0);
        } else {
          kKernels<T, 1>[r_count](x_rows, x_stride, b0, tile, panels, y_block, ldy, cols, b0 > 0);
        }
      }
    }
  }
}

}  // namespace

const float* kquant_many_prepare(const float* x, int rows, int in, DType w_type, float* scratch) {
  const size_t n_in = static_cast<size_t>(in);
  for (int r = 0; r < rows; ++r) {
    kquant_fill_records_avx512(x + static_cast<size_t>(r) * n_in, in, w_type, /*pairs_order=*/false,
                               scratch + static_cast<size_t>(r) * kquant_row_floats(in));
  }
  return scratch;
}

void kquant_many_rows(const float* prepared, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                      float* y, size_t ldy) {
  switch (w_type) {
    case DType::Q4_K: many_rows_typed<DType::Q4_K>(prepared, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q5_K: many_rows_typed<DType::Q5_K>(prepared, rows, w, in, o_begin, o_end, y, ldy); break;
    default: many_rows_typed<DType::Q6_K>(prepared, rows, w, in, o_begin, o_end, y, ldy); break;
  }
}

}  // namespace llama31::kernels::avx512
