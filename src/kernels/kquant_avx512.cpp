// AVX-512 VNNI K-quant x Q8_K products for a few rows (decode), and the vectorized activation
// quantization both AVX-512 K-quant kernels prepare x with.
//
// Decode streams each weight row's super-blocks once (four rows of x share every load; more rows go four at
// a time over the chunk, later passes from cache). Per super-block of one weight row the levels are
// unpacked to four vectors of 64 unsigned bytes, each covering four groups of 16 inputs (Q4_K / Q5_K: the
// low or high nibbles of 64 bytes of qs, two sub-blocks of 32; Q6_K: the low or high nibbles of 64 bytes
// of ql with two bits each from qh, four groups of 16), and the scales to four vectors of 16-bit words,
// each group's scale over its lanes. Per row of x, vpmaddubsw multiplies levels (unsigned, <= 63) by the
// int8 activations into 16-bit pairs (at most 2 * 63 * 127: no saturation) and vpdpwssd multiplies those
// by the scales and adds them into 32-bit lanes: the lanes sum exactly to the super-block's isum (kquant.h).
// Q4_K / Q5_K's mins term is one vpmaddwd of the eight mins by the eight sub-block sums of x; Q6_K's -32
// is folded into isum the same way (8 * scale times -4 * group sum, both within 16 bits). Each row keeps an
// fp32 vector accumulator: += isum lanes * (d * dx), -= imin lanes * (dmin * dx), summed once at the end.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/kquant_avx512.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/kquant.h"
#include "util/kquant.h"

namespace llama31::kernels::avx512 {
namespace {

constexpr size_t kAheadBlocks = 3;  // weight prefetch distance, in blocks of O rows (see q8_0_avx512.cpp)

// vpshufb controls of the scale vectors of a Q4_K / Q5_K super-block's four level vectors: 64 bytes of qs
// give sub-blocks (0, 2) in their low nibbles and (1, 3) in the high ones, the next 64 (4, 6) and (5, 7);
// each control picks the first sub-block's 16-bit scale (bytes 2a, 2a + 1) in every lane of the lower 256
// bits and the second's (2b, 2b + 1) in the upper, from the eight scales broadcast to every 128-bit lane.
struct PairControls {
  alignas(64) int8_t bytes[4][64];
};
constexpr PairControls make_pair_controls() {
  constexpr int kPairs[4][2] = {{0, 2}, {1, 3}, {4, 6}, {5, 7}};
  PairControls c{};
  for (int k = 0; k < 4; ++k) {
    for (int i = 0; i < 64; ++i) c.bytes[k][i] = static_cast<int8_t>(2 * kPairs[k][i < 32 ? 0 : 1] + i % 2);
  }
  return c;
}
constexpr PairControls kPairControls = make_pair_controls();

// One super-block of one weight row, unpacked: four vectors of levels and their scale vectors, plus what
// the per-row step needs (Q4_K / Q5_K: the eight mins as words, [d, dmin]; Q6_K: 8 * scales as words, d).
struct Unpacked {
  __m512i levels[4];
  __m512i scales[4];
  __m128i mins;
  __m512i scales8;
  __m128 d;
};

// Q5_K: the qh bit of each byte of the four level vectors (lower 256 bits: the first sub-block of the
// pair, upper: the second).
struct HighBits {
  __m512i bit[4] = {_mm512_inserti64x4(_mm512_set1_epi8(1), _mm256_set1_epi8(4), 1),
                    _mm512_inserti64x4(_mm512_set1_epi8(2), _mm256_set1_epi8(8), 1),
                    _mm512_inserti64x4(_mm512_set1_epi8(16), _mm256_set1_epi8(64), 1),
                    _mm512_inserti64x4(_mm512_set1_epi8(32), _mm256_set1_epi8(static_cast<char>(128)), 1)};
};

template <DType T>
inline __attribute__((always_inline)) void unpack_q45(const uint8_t* block, const HighBits& high, Unpacked& u) {
  uint64_t scales, mins;
  kquant::scales_mins(block + kquant::kQ4KScales, scales, mins);
  const __m512i scale_words = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(scales))));
  u.mins = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(mins)));
  int32_t d_dmin;  // the two f16 scales
  std::memcpy(&d_dmin, block, sizeof d_dmin);
  u.d = _mm_cvtph_ps(_mm_cvtsi32_si128(d_dmin));
  constexpr bool kFive = T == DType::Q5_K;
  const uint8_t* qs = block + (kFive ? kquant::kQ5KQs : kquant::kQ4KQs);
  const __m512i low_mask = _mm512_set1_epi8(0x0f);
  __m512i high_bits;
  if constexpr (kFive) {
    high_bits = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kquant::kQ5KQh)));
  }
  #pragma GCC unroll 2
  for (int half = 0; half < 2; ++half) {
    const __m512i packed = _mm512_loadu_si512(qs + 64 * half);
    u.levels[2 * half] = _mm512_and_si512(packed, low_mask);
    u.levels[2 * half + 1] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_mask);
  }
  #pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    if constexpr (kFive) {
      const __mmask64 set = _mm512_test_epi8_mask(high_bits, high.bit[k]);
      u.levels[k] = _mm512_mask_add_epi8(u.levels[k], set, u.levels[k], _mm512_set1_epi8(16));
    }
    u.scales[k] = _mm512_shuffle_epi8(scale_words, _mm512_load_si512(kPairControls.bytes[k]));
  }
}

// Q6_K: per half, 64 bytes of ql (low nibbles: values 0-63 of the half, high: 64-127) and the 32 bytes of
// qh, broadcast to both 256-bit halves and shifted per half so each byte's two bits land at bits 4-5.
inline __attribute__((always_inline)) void unpack_q6(const uint8_t* block, Unpacked& u) {
  const __m512i low_mask = _mm512_set1_epi8(0x0f), high_mask = _mm512_set1_epi8(0x30);
  const __m512i left = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);   // bits 0-1, 2-3
  const __m512i right = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);  // bits 4-5, 6-7
  #pragma GCC unroll 2
  for (int half = 0; half < 2; ++half) {
    const __m512i ql = _mm512_loadu_si512(block + 64 * half);
    const __m512i qh = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kquant::kQ6KQh + 32 * half)));
    // (low nibble) | (shifted qh & 0x30): ternary-logic A | (B & C).
    u.levels[2 * half] =
        _mm512_ternarylogic_epi32(_mm512_and_si512(ql, low_mask), _mm512_sllv_epi16(qh, left), high_mask, 0xF8);
    u.levels[2 * half + 1] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low_mask),
                                                       _mm512_srlv_epi16(qh, right), high_mask, 0xF8);
  }
  const __m256i words = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + kquant::kQ6KScales)));
  const __m512i all = _mm512_zextsi256_si512(words);
  #pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {  // lane i of vector k: group 4k + i
    u.scales[k] = _mm512_permutexvar_epi16(
        _mm512_add_epi16(_mm512_set1_epi16(static_cast<short>(4 * k)),
                         _mm512_set_epi64(0x0003000300030003, 0x0003000300030003, 0x0002000200020002, 0x0002000200020002,
                                          0x0001000100010001, 0x0001000100010001, 0, 0)),
        all);
  }
  u.scales8 = _mm512_zextsi256_si512(_mm256_slli_epi16(words, 3));
  uint16_t d_bits;
  std::memcpy(&d_bits, block + kquant::kQ6KD, 2);
  u.d = _mm_set1_ps(_cvtsh_ss(d_bits));
}

template <DType T, int R, int O>
void kquant_block(const float* prepared, size_t x_stride, const void* w, int in, int o, float* y, size_t ldy) {
  const size_t blocks = static_cast<size_t>(in) / 256;
  const size_t w_row = row_bytes(T, in);
  constexpr size_t kBytes = kquant_block_bytes(T);
  const uint8_t* rows[O];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) rows[j] = static_cast<const uint8_t*>(w) + static_cast<size_t>(o + j) * w_row;
  __m512 acc[O][R];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[j][r] = _mm512_setzero_ps();
  }
  const HighBits high_bits;
  for (size_t b = 0; b < blocks; ++b) {
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      const uint8_t* block = rows[j] + b * kBytes;
      const char* ahead = reinterpret_cast<const char*>(block) + kAheadBlocks * O * w_row;
      #pragma GCC unroll 4
      for (size_t line = 0; line < kBytes; line += 64) _mm_prefetch(ahead + line, _MM_HINT_T1);
      Unpacked u;
      if constexpr (T == DType::Q6_K) {
        unpack_q6(block, u);
      } else {
        unpack_q45<T>(block, high_bits, u);
      }
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const auto* record = reinterpret_cast<const KquantActivations*>(prepared + static_cast<size_t>(r) * x_stride) + b;
        __m512i isum = _mm512_setzero_si512();
        if constexpr (T == DType::Q6_K) {  // 8 * scale_g * (-4 * group sum): the -32 of every level
          isum = _mm512_dpwssd_epi32(isum, u.scales8, _mm512_loadu_si512(record->sums));
        }
        #pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
          const __m512i pairs = _mm512_maddubs_epi16(u.levels[k], _mm512_loadu_si512(record->q + 64 * k));
          isum = _mm512_dpwssd_epi32(isum, pairs, u.scales[k]);
        }
        const __m128 scaled = _mm_mul_ps(u.d, _mm_set1_ps(record->d));  // [d * dx, dmin * dx]
        acc[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_broadcastss_ps(scaled), acc[j][r]);
        if constexpr (T != DType::Q6_K) {
          const __m128i imin = _mm_madd_epi16(u.mins, _mm_loadu_si128(reinterpret_cast<const __m128i*>(record->sums)));
          acc[j][r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_zextsi128_si512(imin)),
                                       _mm512_broadcastss_ps(_mm_movehdup_ps(scaled)), acc[j][r]);
        }
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

template <DType T, int R>
void kquant_rows(const float* prepared, size_t x_stride, const void* w, int in, int o_begin, int o_end, float* y,
                 size_t ldy) {
  constexpr int kOutRows = R == 1 ? 8 : 4;
  int o = o_begin;
  for (; o + kOutRows <= o_end; o += kOutRows) kquant_block<T, R, kOutRows>(prepared, x_stride, w, in, o, y, ldy);
  for (; o < o_end; ++o) kquant_block<T, R, 1>(prepared, x_stride, w, in, o, y, ldy);
}

template <DType T>
void kquant_typed(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                  size_t ldy) {
  const size_t x_stride = kquant_row_floats(in);
  for (int r0 = 0; r0 < rows; r0 += 4) {
    const float* x_group = prepared + static_cast<size_t>(r0) * x_stride;
    float* y_group = y + static_cast<size_t>(r0) * ldy;
    switch (std::min(4, rows - r0)) {
      case 1: kquant_rows<T, 1>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 2: kquant_rows<T, 2>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 3: kquant_rows<T, 3>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      default: kquant_rows<T, 4>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
    }
  }
}

}  // namespace

size_t kquant_scratch(int rows, int in) { return static_cast<size_t>(rows) * kquant_row_floats(in); }

void kquant_fill_records_avx512(const float* x, int n, DType w_type, bool pairs_order, void* records_out) {
  auto* records = static_cast<KquantActivations*>(records_out);
  constexpr int kPairs[8] = {0, 2, 1, 3, 4, 6, 5, 7};  // slot k of the pairs order holds x's sub-block kPairs[k]
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (int b = 0; b < n / 256; ++b) {
    const float* block = x + static_cast<size_t>(b) * 256;
    KquantActivations& record = records[b];
    __m512 v[16];
    __m512 max_abs = _mm512_setzero_ps();
    #pragma GCC unroll 16
    for (int k = 0; k < 16; ++k) {
      v[k] = _mm512_loadu_ps(block + 16 * k);
      max_abs = _mm512_max_ps(max_abs, _mm512_and_ps(v[k], abs_mask));
    }
    const float amax = _mm512_reduce_max_ps(max_abs);
    std::memset(record.unused, 0, sizeof record.unused);
    if (!(amax > 0.0f)) {  // all zero (as the scalar quantizer, which never finds a larger magnitude)
      std::memset(record.q, 0, sizeof record.q);
      std::memset(record.sums, 0, sizeof record.sums);
      std::memset(record.starts, 0, sizeof record.starts);
      record.d = 0.0f;
      continue;
    }
    // The first value of that magnitude, as the scalar quantizer's strict comparison keeps.
    float max = 0.0f;
    const __m512 amax_v = _mm512_set1_ps(amax);
    for (int k = 0; k < 16; ++k) {
      const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_and_ps(v[k], abs_mask), amax_v, _CMP_EQ_OQ);
      if (hit != 0) {
        max = block[16 * k + __builtin_ctz(hit)];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m512 iscale_v = _mm512_set1_ps(iscale);
    const __m512i limit = _mm512_set1_epi32(127);
    int32_t group_sums[16];
    #pragma GCC unroll 16
    for (int k = 0; k < 16; ++k) {
      // Round half to even (the default rounding mode), as the scalar add-and-remove of 1.5 * 2^23.
      const __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v[k], iscale_v)), limit);
      group_sums[k] = _mm512_reduce_add_epi32(q);
      const int slot = pairs_order ? kPairs[k / 2] : k / 2;  // kPairs is its own inverse
      _mm_storeu_si128(reinterpret_cast<__m128i*>(record.q + 32 * slot + 16 * (k % 2)), _mm512_cvtsepi32_epi8(q));
    }
    record.d = 1.0f / iscale;
    for (int g = 0; g < 16; ++g) {
      if (w_type == DType::Q6_K) {
        record.sums[g] = static_cast<int16_t>(-4 * group_sums[g]);
        record.starts[g] = -32 * group_sums[g];
      } else {
        record.sums[g] = g < 8 ? static_cast<int16_t>(group_sums[2 * g] + group_sums[2 * g + 1]) : int16_t{0};
        record.starts[g] = 0;
      }
    }
  }
}

const float* kquant_prepare(const float* x, int rows, int in, DType w_type, float* scratch) {
  const size_t n_in = static_cast<size_t>(in);
  for (int r = 0; r < rows; ++r) {
    kquant_fill_records_avx512(x + static_cast<size_t>(r) * n_in, in, w_type, w_type != DType::Q6_K,
                               scratch + static_cast<size_t>(r) * kquant_row_floats(in));
  }
  return scratch;
}

void kquant_small_rows(const float* prepared, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                       float* y, size_t ldy) {
  switch (w_type) {
    case DType::Q4_K: kquant_typed<DType::Q4_K>(prepared, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q5_K: kquant_typed<DType::Q5_K>(prepared, rows, w, in, o_begin, o_end, y, ldy); break;
    default: kquant_typed<DType::Q6_K>(prepared, rows, w, in, o_begin, o_end, y, ldy); break;
  }
}

}  // namespace llama31::kernels::avx512
