// AVX-512 matmul: a matrix-vector kernel for a few rows of x (decode, memory-bound) and a register-
// blocked matrix-matrix kernel for many rows (prefill, compute-bound). All arithmetic is fp32 FMA;
// BF16, F16 and FP8 E4M3 weights are widened to fp32 exactly (FP8 decode: fp8_avx512.cpp). The loops
// over rows (R) and output rows (O) carry "#pragma GCC unroll": unrolled, their accumulators live in
// registers; GCC -O2 otherwise keeps the accumulator arrays in memory and the matrix-matrix kernel runs
// at a third of its speed.
// GCC 12 reports its own AVX-512 intrinsics (which start from an undefined register on purpose) as
// using uninitialized values once inlined; the pragma must precede the header to cover its lines.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/isa_table.h"
#include "kernels/aligned_buffer.h"
#include "kernels/fp8_avx512.h"
#include "kernels/kquant_avx512.h"
#include "kernels/q4_0_avx512.h"
#include "kernels/q8_0_avx512.h"
#include "kernels/scalar.h"
#include "kernels/simd_ops.h"

namespace llama31::kernels::avx512 {
namespace {

constexpr int kBlock = 32;  // elements of `in` per step of the small-rows kernel

size_t padded_in(int in) { return (static_cast<size_t>(in) + kBlock - 1) / kBlock * kBlock; }

// Two fp32 vectors holding 32 consecutive weights. For BF16 they are the even and the odd elements
// (the matching x is rearranged the same way by prepare); for F16 and F32 the first and second 16.
template <DType T>
inline void load_weights(const void* row, size_t index, __m512& first, __m512& second) {
  if constexpr (T == DType::BF16) {
    const __m512i packed = _mm512_loadu_si512(static_cast<const uint16_t*>(row) + index);
    first = _mm512_castsi512_ps(_mm512_slli_epi32(packed, 16));
    second = _mm512_castsi512_ps(_mm512_and_si512(packed, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  } else if constexpr (T == DType::F16) {
    const auto* p = static_cast<const uint16_t*>(row) + index;
    first = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    second = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16)));
  } else {
    const float* p = static_cast<const float*>(row) + index;
    first = _mm512_loadu_ps(p);
    second = _mm512_loadu_ps(p + 16);
  }
}

// The last count (< 32) weights of a row, zero beyond.
template <DType T>
inline void load_weights_tail(const void* row, size_t index, int count, __m512& first, __m512& second) {
  const int first_count = std::min(count, 16);
  const int second_count = count - first_count;
  const __mmask16 first_mask = static_cast<__mmask16>((1u << first_count) - 1u);
  const __mmask16 second_mask = static_cast<__mmask16>((1u << second_count) - 1u);
  if constexpr (T == DType::BF16) {
    const __mmask32 mask = static_cast<__mmask32>((uint64_t{1} << count) - 1u);
    const __m512i packed = _mm512_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(row) + index);
    first = _mm512_castsi512_ps(_mm512_slli_epi32(packed, 16));
    second = _mm512_castsi512_ps(_mm512_and_si512(packed, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  } else if constexpr (T == DType::F16) {
    const auto* p = static_cast<const uint16_t*>(row) + index;
    first = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first_mask, p));
    second = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(second_mask, p + 16));
  } else {
    const float* p = static_cast<const float*>(row) + index;
    first = _mm512_maskz_loadu_ps(first_mask, p);
    second = _mm512_maskz_loadu_ps(second_mask, p + 16);
  }
}

// R rows of prepared x against O consecutive rows of W; acc[j][r] is one output element, updated in
// the same order whatever R and O are.
template <DType T, int R, int O>
void small_rows_block(const float* xp, size_t x_stride, const void* w, int in, int o, float* y, size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  const void* rows[O];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    rows[j] = static_cast<const char*>(w) + static_cast<size_t>(o + j) * n_in * dtype_size(T);
  }
  __m512 acc[O][R];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[j][r] = _mm512_setzero_ps();
  }
  const size_t full = n_in / kBlock * kBlock;
  for (size_t i = 0; i < full; i += kBlock) {
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      __m512 w_first, w_second;
      load_weights<T>(rows[j], i, w_first, w_second);
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const float* xr = xp + static_cast<size_t>(r) * x_stride + i;
        acc[j][r] = _mm512_fmadd_ps(w_first, _mm512_loadu_ps(xr), acc[j][r]);
        acc[j][r] = _mm512_fmadd_ps(w_second, _mm512_loadu_ps(xr + 16), acc[j][r]);
      }
    }
  }
  if (full < n_in) {
    const int count = static_cast<int>(n_in - full);
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      __m512 w_first, w_second;
      load_weights_tail<T>(rows[j], full, count, w_first, w_second);
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const float* xr = xp + static_cast<size_t>(r) * x_stride + full;
        acc[j][r] = _mm512_fmadd_ps(w_first, _mm512_loadu_ps(xr), acc[j][r]);
        acc[j][r] = _mm512_fmadd_ps(w_second, _mm512_loadu_ps(xr + 16), acc[j][r]);
      }
    }
  }
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o + j)] = _mm512_reduce_add_ps(acc[j][r]);
    }
  }
}

// BF16 weights: x is held as two bf16 vectors, hi = bf16(x) and lo = bf16(x - hi) (16 significant
// bits together, relative error <= 2^-17), and vdpbf16ps multiplies 32 weights by each exactly in
// fp32. This reads each weight once with one instruction per half instead of widening it: decode is
// memory-bound, and fewer instructions per byte let two cores reach more of the bandwidth.
// (llama.cpp rounds x to a single bf16, error 2^-9.) Prepared x is block-major (small_rows_prepare):
// one pointer reaches all R rows of a block; per-row pointers ran out of registers at 8 rows.
template <int R, int O>
void small_rows_block_bf16(const uint16_t* x_first, size_t block_stride, const void* w, int in, int o, float* y,
                           size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  const uint16_t* rows[O];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) rows[j] = static_cast<const uint16_t*>(w) + static_cast<size_t>(o + j) * n_in;
  __m512 acc[O][R];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[j][r] = _mm512_setzero_ps();
  }
  auto step = [&](size_t i, __mmask32 mask) {
    const uint16_t* xb = x_first + i / kBlock * block_stride;
    __m512bh hi[R], lo[R];
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      hi[r] = (__m512bh)_mm512_loadu_si512(xb + static_cast<size_t>(r) * 2 * kBlock);
      lo[r] = (__m512bh)_mm512_loadu_si512(xb + static_cast<size_t>(r) * 2 * kBlock + kBlock);
    }
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      // Into L2, three blocks of rows ahead: each row starts a new stream (see q8_0_avx512.cpp).
      _mm_prefetch(reinterpret_cast<const char*>(rows[j] + i + 3 * O * n_in), _MM_HINT_T1);
      const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(mask, rows[j] + i);
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        acc[j][r] = _mm512_dpbf16_ps(acc[j][r], wv, hi[r]);
        acc[j][r] = _mm512_dpbf16_ps(acc[j][r], wv, lo[r]);
      }
    }
  };
  const size_t full = n_in / kBlock * kBlock;
  for (size_t i = 0; i < full; i += kBlock) step(i, static_cast<__mmask32>(0xffffffffu));
  if (full < n_in) step(full, static_cast<__mmask32>((uint64_t{1} << (n_in - full)) - 1u));
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o + j)] = _mm512_reduce_add_ps(acc[j][r]);
    }
  }
}

template <DType T, int R>
void small_rows_typed(const float* xp, const void* w, int in, int o_begin, int o_end, float* y, size_t ldy) {
  // Output rows per block: as many as the accumulators (O x R vectors) leave registers for.
  constexpr int kOutRows = R == 1 ? 8 : 4;
  const size_t x_stride = padded_in(in);
  int o = o_begin;
  for (; o + kOutRows <= o_end; o += kOutRows) small_rows_block<T, R, kOutRows>(xp, x_stride, w, in, o, y, ldy);
  for (; o < o_end; ++o) small_rows_block<T, R, 1>(xp, x_stride, w, in, o, y, ldy);
}

// BF16: R <= 4 rows of block-major prepared x starting at x_first (blocks block_stride uint16 apart).
// O x R accumulators + 2R vectors of x fit the registers for R <= 4 with O = 4 (8 rows at once spill).
template <int R>
void small_rows_bf16(const uint16_t* x_first, size_t block_stride, const void* w, int in, int o_begin, int o_end,
                     float* y, size_t ldy) {
  constexpr int kOutRows = R == 1 ? 8 : 4;
  int o = o_begin;
  for (; o + kOutRows <= o_end; o += kOutRows) {
    small_rows_block_bf16<R, kOutRows>(x_first, block_stride, w, in, o, y, ldy);
  }
  for (; o < o_end; ++o) small_rows_block_bf16<R, 1>(x_first, block_stride, w, in, o, y, ldy);
}

template <int R>
void small_rows_bf16_group(const uint16_t* x_first, size_t block_stride, const void* w, int in, int o_begin,
                           int o_end, float* y, size_t ldy, int rows) {
  switch (rows) {
    case 1: small_rows_bf16<1>(x_first, block_stride, w, in, o_begin, o_end, y, ldy); break;
    case 2: small_rows_bf16<2>(x_first, block_stride, w, in, o_begin, o_end, y, ldy); break;
    case 3: small_rows_bf16<3>(x_first, block_stride, w, in, o_begin, o_end, y, ldy); break;
    default: small_rows_bf16<R>(x_first, block_stride, w, in, o_begin, o_end, y, ldy); break;
  }
}

template <DType T>
void small_rows_rows(const float* xp, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                     size_t ldy) {
  if constexpr (T == DType::BF16) {
    // Four rows at a time over this chunk of outputs: later passes find the chunk's weights in L2.
    const auto* x_blocks = reinterpret_cast<const uint16_t*>(xp);
    const size_t block_stride = static_cast<size_t>(rows) * 2 * kBlock;
    for (int r0 = 0; r0 < rows; r0 += 4) {
      small_rows_bf16_group<4>(x_blocks + static_cast<size_t>(r0) * 2 * kBlock, block_stride, w, in, o_begin, o_end,
                               y + static_cast<size_t>(r0) * ldy, ldy, std::min(4, rows - r0));
    }
    return;
  }
  const size_t x_stride = padded_in(in);
  for (int r0 = 0; r0 < rows; r0 += 4) {
    const float* x_group = xp + static_cast<size_t>(r0) * x_stride;
    float* y_group = y + static_cast<size_t>(r0) * ldy;
    switch (std::min(4, rows - r0)) {
      case 1: small_rows_typed<T, 1>(x_group, w, in, o_begin, o_end, y_group, ldy); break;
      case 2: small_rows_typed<T, 2>(x_group, w, in, o_begin, o_end, y_group, ldy); break;
      case 3: small_rows_typed<T, 3>(x_group, w, in, o_begin, o_end, y_group, ldy); break;
      default: small_rows_typed<T, 4>(x_group, w, in, o_begin, o_end, y_group, ldy); break;
    }
  }
}

size_t small_rows_scratch(int rows, int in, DType w_type) {
  if (is_kquant_dtype(w_type)) return kquant_scratch(rows, in);
  if (w_type == DType::Q8_0) return q8_0_scratch(rows, in);
  if (w_type == DType::Q8_0_R16) return q8_0_many_scratch(rows, in);  // one kernel for every row count
  if (w_type == DType::Q4_0_R16) return q4_0_many_scratch(rows, in);  // one kernel for every row count
  if (w_type == DType::Q4_0) return q4_0_scratch(rows, in);
  return static_cast<size_t>(rows) * padded_in(in);
}

// Copies x into zero-padded rows of a multiple of 32; for BF16 weights each row becomes its hi and lo
// bf16 halves instead (see small_rows_block_bf16), which take the same bytes as the fp32 row.
const float* small_rows_prepare(const float* x, int rows, int in, DType w_type, float* scratch) {
  if (is_kquant_dtype(w_type)) return kquant_prepare(x, rows, in, w_type, scratch);
  if (w_type == DType::Q8_0) return q8_0_prepare(x, rows, in, scratch);
  if (w_type == DType::Q8_0_R16) return q8_0_many_prepare(x, rows, in, scratch);
  if (w_type == DType::Q4_0_R16) return q4_0_many_prepare(x, rows, in, scratch);
  if (w_type == DType::Q4_0) return q4_0_prepare(x, rows, in, scratch);
  const size_t stride = padded_in(in);
  const size_t n_in = static_cast<size_t>(in);
  for (int r = 0; r < rows; ++r) {
    const float* src = x + static_cast<size_t>(r) * n_in;
    float* dst = scratch + static_cast<size_t>(r) * stride;
    if (w_type != DType::BF16) {
      std::copy(src, src + n_in, dst);
      std::fill(dst + n_in, dst + stride, 0.0f);
      continue;
    }
    // Block-major (see small_rows_block_bf16): the hi and lo halves of rows' blocks side by side, so the
    // kernel reaches every row of a block from one pointer.
    auto* blocks = reinterpret_cast<uint16_t*>(scratch);
    for (size_t i = 0; i < stride; i += 16) {
      const size_t count = std::min<size_t>(16, n_in > i ? n_in - i : 0);
      const __mmask16 mask = static_cast<__mmask16>((1u << count) - 1u);
      const __m512 v = _mm512_maskz_loadu_ps(mask, src + i);
      const __m256bh h = _mm512_cvtneps_pbh(v);
      const __m512 h_f32 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)h), 16));
      const __m256bh l = _mm512_cvtneps_pbh(_mm512_sub_ps(v, h_f32));
      uint16_t* hi = blocks + (i / kBlock * static_cast<size_t>(rows) + static_cast<size_t>(r)) * 2 * kBlock + i % kBlock;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi), (__m256i)h);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + kBlock), (__m256i)l);
    }
  }
  return scratch;
}

void small_rows_range(const float* xp, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                      float* y, size_t ldy) {
  switch (w_type) {
    case DType::BF16: small_rows_rows<DType::BF16>(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F16: small_rows_rows<DType::F16>(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F32: small_rows_rows<DType::F32>(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q8_0: q8_0_small_rows(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q8_0_R16: q8_0_r16_rows(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q4_0: q4_0_small_rows(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q4_0_R16: q4_0_r16_rows(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: kquant_small_rows(xp, rows, w, w_type, in, o_begin, o_end, y, ldy); break;
    case DType::F8_E4M3: fp8_small_rows(xp, padded_in(in), rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::I32: break;  // rejected by kernels::matmul
  }
}

// ---- many rows: W chunk packed to fp32 panels of 32 output rows, x rows broadcast ----

constexpr int kPanel = 32;     // output rows per micro-kernel (two vectors)
constexpr int kMaxRows = 12;   // rows of x per micro-kernel (24 accumulators)
constexpr int kDepth = 256;    // elements of `in` per packed tile

// 16 weights of row `row` from column `col` as fp32.
template <DType T>
inline __m512 load16_as_f32(const void* w, size_t n_in, size_t row, size_t col) {
  const size_t index = row * n_in + col;
  if constexpr (T == DType::BF16) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + index));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
  } else if constexpr (T == DType::F16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + index)));
  } else if constexpr (T == DType::F8_E4M3) {
    // As fp8_avx512.cpp widens them (e4m3 value / 256 as f16 bits), times 256: exact.
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint8_t*>(w) + index));
    const __m256i half_bits = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(bytes), 7),
                                               _mm256_set1_epi16(static_cast<short>(0xbf80)));
    return _mm512_mul_ps(_mm512_cvtph_ps(half_bits), _mm512_set1_ps(256.0f));
  } else {
    return _mm512_loadu_ps(static_cast<const float*>(w) + index);
  }
}

template <DType T>
inline float load1_as_f32(const void* w, size_t n_in, size_t row, size_t col) {
  const size_t index = row * n_in + col;
  if constexpr (T == DType::BF16) {
    return bf16_to_f32(static_cast<const uint16_t*>(w)[index]);
  } else if constexpr (T == DType::F16) {
    return _cvtsh_ss(static_cast<const uint16_t*>(w)[index]);
  } else if constexpr (T == DType::F8_E4M3) {
    return f8e4m3_to_f32(static_cast<const uint8_t*>(w)[index]);
  } else {
    return static_cast<const float*>(w)[index];
  }
}

// In place: v[i] holds row i of a 16x16 block on entry and column i on return.
inline void transpose16x16(__m512 v[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {  // pairs of rows interleaved per 128-bit lane
    t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
  }
  __m512 s[16];  // s[4g+m], lane L: rows 4g..4g+3 of column 4L+m
  for (int g = 0; g < 4; ++g) {
    const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * g + 1]), d = _mm512_castps_pd(t[4 * g + 3]);
    s[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    s[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    s[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    s[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int m = 0; m < 4; ++m) {  // 4x4 transpose of 128-bit lanes across s[m], s[4+m], s[8+m], s[12+m]
    const __m512 p = _mm512_shuffle_f32x4(s[m], s[4 + m], 0x44);
    const __m512 q = _mm512_shuffle_f32x4(s[m], s[4 + m], 0xee);
    const __m512 r = _mm512_shuffle_f32x4(s[8 + m], s[12 + m], 0x44);
    const __m512 u = _mm512_shuffle_f32x4(s[8 + m], s[12 + m], 0xee);
    v[m] = _mm512_shuffle_f32x4(p, r, 0x88);
    v[4 + m] = _mm512_shuffle_f32x4(p, r, 0xdd);
    v[8 + m] = _mm512_shuffle_f32x4(q, u, 0x88);
    v[12 + m] = _mm512_shuffle_f32x4(q, u, 0xdd);
  }
}

// packed[p][k][j] = W[o_begin + p*32 + j][k0 + k] as fp32, zero for rows at or past o_end; blocks of
// 16 rows x 16 elements are converted and transposed in registers.
template <DType T>
void pack_tile(const void* w, int in, int o_begin, int o_end, int k0, int depth, float* packed) {
  const int n_panels = (o_end - o_begin + kPanel - 1) / kPanel;
  const size_t n_in = static_cast<size_t>(in);
  const int full_depth = depth / 16 * 16;
  for (int p = 0; p < n_panels; ++p) {
    float* panel = packed + static_cast<size_t>(p) * static_cast<size_t>(depth) * kPanel;
    for (int half = 0; half < kPanel; half += 16) {
      const int first_row = o_begin + p * kPanel + half;
      const int valid_rows = std::clamp(o_end - first_row, 0, 16);
      for (int k = 0; k < full_depth; k += 16) {
        __m512 block[16];
        for (int j = 0; j < 16; ++j) {
          block[j] = j < valid_rows ? load16_as_f32<T>(w, n_in, static_cast<size_t>(first_row + j), static_cast<size_t>(k0 + k))
                                    : _mm512_setzero_ps();
        }
        transpose16x16(block);
        for (int c = 0; c < 16; ++c) _mm512_store_ps(panel + (k + c) * kPanel + half, block[c]);
      }
      for (int k = full_depth; k < depth; ++k) {
        for (int j = 0; j < 16; ++j) {
          panel[k * kPanel + half + j] =
              j < valid_rows ? load1_as_f32<T>(w, n_in, static_cast<size_t>(first_row + j), static_cast<size_t>(k0 + k)) : 0.0f;
        }
      }
    }
  }
}

// y[r][0..cols) (+)= sum_k x[r][k] * panel[k][0..cols) for R rows; each element is one FMA chain over k.
template <int R>
void micro_kernel(const float* x, size_t x_stride, const float* panel, int depth, float* y, size_t ldy,
                  int cols, bool accumulate) {
  const __mmask16 first_mask = static_cast<__mmask16>(cols >= 16 ? 0xffffu : (1u << cols) - 1u);
  const __mmask16 second_mask = static_cast<__mmask16>(cols >= 32 ? 0xffffu : cols <= 16 ? 0u : (1u << (cols - 16)) - 1u);
  __m512 acc[R][2];
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    if (accumulate) {
      acc[r][0] = _mm512_maskz_loadu_ps(first_mask, y + static_cast<size_t>(r) * ldy);
      acc[r][1] = _mm512_maskz_loadu_ps(second_mask, y + static_cast<size_t>(r) * ldy + 16);
    } else {
      acc[r][0] = _mm512_setzero_ps();
      acc[r][1] = _mm512_setzero_ps();
    }
  }
  for (int k = 0; k < depth; ++k) {
    const __m512 w_first = _mm512_load_ps(panel + k * kPanel);
    const __m512 w_second = _mm512_load_ps(panel + k * kPanel + 16);
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 xb = _mm512_set1_ps(x[static_cast<size_t>(r) * x_stride + static_cast<size_t>(k)]);
      acc[r][0] = _mm512_fmadd_ps(xb, w_first, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(xb, w_second, acc[r][1]);
    }
  }
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(y + static_cast<size_t>(r) * ldy, first_mask, acc[r][0]);
    _mm512_mask_storeu_ps(y + static_cast<size_t>(r) * ldy + 16, second_mask, acc[r][1]);
  }
}

using MicroKernel = void (*)(const float*, size_t, const float*, int, float*, size_t, int, bool);
constexpr MicroKernel kMicroKernels[kMaxRows + 1] = {
    nullptr,         micro_kernel<1>, micro_kernel<2>,  micro_kernel<3>,  micro_kernel<4>,
    micro_kernel<5>, micro_kernel<6>, micro_kernel<7>,  micro_kernel<8>,  micro_kernel<9>,
    micro_kernel<10>, micro_kernel<11>, micro_kernel<12>};

template <DType T>
void many_rows_typed(const float* x, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                     size_t ldy) {
  thread_local std::vector<float, AlignedAllocator<float>> packed;
  const int n_panels = (o_end - o_begin + kPanel - 1) / kPanel;
  packed.resize(static_cast<size_t>(n_panels) * kPanel * kDepth);
  const size_t x_stride = static_cast<size_t>(in);
  for (int k0 = 0; k0 < in; k0 += kDepth) {
    const int depth = std::min(kDepth, in - k0);
    pack_tile<T>(w, in, o_begin, o_end, k0, depth, packed.data());
    for (int r0 = 0; r0 < rows; r0 += kMaxRows) {
      const int r_count = std::min(kMaxRows, rows - r0);
      const float* x_block = x + static_cast<size_t>(r0) * x_stride + static_cast<size_t>(k0);
      for (int p = 0; p < n_panels; ++p) {
        const int o = o_begin + p * kPanel;
        kMicroKernels[r_count](x_block, x_stride, packed.data() + static_cast<size_t>(p) * kPanel * static_cast<size_t>(depth),
                               depth, y + static_cast<size_t>(r0) * ldy + static_cast<size_t>(o), ldy,
                               std::min(kPanel, o_end - o), k0 > 0);
      }
    }
  }
}

size_t many_rows_scratch(int rows, int in, DType w_type) {
  if (is_kquant_dtype(w_type)) return kquant_scratch(rows, in);
  if (w_type == DType::Q8_0 || w_type == DType::Q8_0_R16) return q8_0_many_scratch(rows, in);
  if (w_type == DType::Q4_0_R16) return q4_0_many_scratch(rows, in);
  return w_type == DType::Q4_0 ? q4_0_many_scratch(rows, in) : 0;
}

const float* many_rows_prepare(const float* x, int rows, int in, DType w_type, float* scratch) {
  if (is_kquant_dtype(w_type)) return kquant_many_prepare(x, rows, in, w_type, scratch);
  if (w_type == DType::Q8_0 || w_type == DType::Q8_0_R16) return q8_0_many_prepare(x, rows, in, scratch);
  if (w_type == DType::Q4_0_R16) return q4_0_many_prepare(x, rows, in, scratch);
  return w_type == DType::Q4_0 ? q4_0_many_prepare(x, rows, in, scratch) : x;
}

void many_rows_range(const float* x, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                     float* y, size_t ldy) {
  switch (w_type) {
    case DType::BF16: many_rows_typed<DType::BF16>(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F16: many_rows_typed<DType::F16>(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F32: many_rows_typed<DType::F32>(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q8_0: q8_0_many_rows(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q8_0_R16: q8_0_r16_rows(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q4_0: q4_0_many_rows(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q4_0_R16: q4_0_r16_rows(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: kquant_many_rows(x, rows, w, w_type, in, o_begin, o_end, y, ldy); break;
    case DType::F8_E4M3: many_rows_typed<DType::F8_E4M3>(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::I32: break;  // rejected by kernels::matmul
  }
}

}  // namespace
}  // namespace llama31::kernels::avx512

namespace llama31::kernels {

const IsaKernels& avx512_kernels() {
  static const IsaKernels table{"avx512",
                                avx512::small_rows_scratch,
                                avx512::small_rows_prepare,
                                avx512::small_rows_range,
                                avx512::many_rows_scratch,
                                avx512::many_rows_prepare,
                                avx512::many_rows_range,
                                avx512::rmsnorm,
                                scalar::rope,
                                avx512::softmax,
                                avx512::silu_mul,
                                avx512::attention,
                                avx512::attention_rows,
                                avx512::dot,
                                avx512::xor_words};
  return table;
}

}  // namespace llama31::kernels
