// AVX2 K-quant (Q4_K, Q5_K, Q6_K) x Q8_K products, for both row paths (four rows of x share each load of
// the weights; more rows go four at a time over the chunk, later passes from cache).
//
// x is prepared as natural-order records (kquant.h). Per super-block of one weight row, each 32 bytes of
// levels (unsigned, <= 63) are one Q4_K / Q5_K sub-block (the low or high nibbles of 32 bytes of qs) or two
// Q6_K groups of 16 (a 128-bit lane each); vpmaddubsw multiplies them by the int8 activations into 16-bit
// pairs (at most 2 * 63 * 127: no saturation) and vpmaddwd by the 16-bit scale of each lane's group into
// eight 32-bit lanes, added into the super-block's exact isum (kquant.h). Q4_K / Q5_K's mins term is one
// vpmaddwd of the eight mins by the eight sub-block sums of x; Q6_K's -32 is folded into isum the same way
// (8 * scale times -4 * group sum, both within 16 bits). Each (row of x, weight row) keeps an fp32 vector
// accumulator: += isum lanes * (d * dx), -= imin lanes * (dmin * dx), summed once at the end.
#include "kernels/kquant_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/avx2_reduce.h"
#include "kernels/kquant.h"
#include "util/kquant.h"

namespace llama31::kernels::avx2 {
namespace {

// 32 control bytes: both lanes pick word `word` (bytes 2 word, 2 word + 1), repeated.
__m256i word_control(int word) {
  return _mm256_set1_epi16(static_cast<short>((2 * word) | ((2 * word + 1) << 8)));
}

// 16 control bytes for an int8 vector: 8 copies of byte k, then 8 of byte k + 1.
__m128i byte_pair_control(int k) {
  return _mm_set_epi64x(0x0101010101010101LL * (k + 1), 0x0101010101010101LL * k);
}

// Bit b of every byte of v moved to bit 4 (0x10), the rest cleared.
inline __m256i bit_to_16(__m256i v, int b) {
  const __m256i sixteen = _mm256_set1_epi8(16);
  return b <= 4 ? _mm256_and_si256(_mm256_slli_epi16(v, 4 - b), sixteen)
                : _mm256_and_si256(_mm256_srli_epi16(v, b - 4), sixteen);
}

template <DType T, int R, int O>
void block_rows(const float* prepared, size_t x_stride, const void* w, int in, int o, float* y, size_t ldy) {
  const size_t blocks = static_cast<size_t>(in) / 256;
  const size_t w_row = row_bytes(T, in);
  constexpr size_t kBytes = kquant_block_bytes(T);
  const uint8_t* rows[O];
  #pragma GCC unroll 8
  for (int j = 0; j < O; ++j) rows[j] = static_cast<const uint8_t*>(w) + static_cast<size_t>(o + j) * w_row;
  __m256 acc[O][R];
  #pragma GCC unroll 8
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[j][r] = _mm256_setzero_ps();
  }
  const __m256i low_mask = _mm256_set1_epi8(0x0f), high_mask = _mm256_set1_epi8(0x30);
  for (size_t b = 0; b < blocks; ++b) {
    const KquantActivations* records[R];
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      records[r] = reinterpret_cast<const KquantActivations*>(prepared + static_cast<size_t>(r) * x_stride) + b;
    }
    #pragma GCC unroll 8
    for (int j = 0; j < O; ++j) {
      const uint8_t* block = rows[j] + b * kBytes;
      const char* ahead = reinterpret_cast<const char*>(block) + 3 * O * w_row;  // as the Q4_0 kernel
      #pragma GCC unroll 4
      for (size_t line = 0; line < kBytes; line += 64) _mm_prefetch(ahead + line, _MM_HINT_T1);
      __m256i isum[R];
      __m128 d;  // [d, dmin] (Q6_K: d in every lane)
      if constexpr (T == DType::Q6_K) {
        const __m128i scales = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + kquant::kQ6KScales));
        const __m256i scales8 = _mm256_slli_epi16(_mm256_cvtepi8_epi16(scales), 3);
        #pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {  // 8 * scale_g * (-4 * group sum): the -32 of every level
          isum[r] = _mm256_madd_epi16(scales8, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(records[r]->sums)));
        }
        #pragma GCC unroll 2
        for (int half = 0; half < 2; ++half) {
          const uint8_t* ql = block + 64 * half;
          const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
          const __m256i bq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
          const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kquant::kQ6KQh + 32 * half));
          const __m256i levels[4] = {
              _mm256_or_si256(_mm256_and_si256(a, low_mask), _mm256_and_si256(_mm256_slli_epi16(qh, 4), high_mask)),
              _mm256_or_si256(_mm256_and_si256(bq, low_mask), _mm256_and_si256(_mm256_slli_epi16(qh, 2), high_mask)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), low_mask), _mm256_and_si256(qh, high_mask)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bq, 4), low_mask),
                              _mm256_and_si256(_mm256_srli_epi16(qh, 2), high_mask))};
          #pragma GCC unroll 4
          for (int quarter = 0; quarter < 4; ++quarter) {  // values 32 quarter.. of the half: two groups
            const __m256i group_scales =
                _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, byte_pair_control(8 * half + 2 * quarter)));
            #pragma GCC unroll 4
            for (int r = 0; r < R; ++r) {
              const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(records[r]->q + 128 * half + 32 * quarter));
              isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(_mm256_maddubs_epi16(levels[quarter], xv), group_scales));
            }
          }
        }
        uint16_t d_bits;
        std::memcpy(&d_bits, block + kquant::kQ6KD, 2);
        d = _mm_set1_ps(_cvtsh_ss(d_bits));
      } else {
        constexpr bool kFive = T == DType::Q5_K;
        uint64_t scales, mins;
        kquant::scales_mins(block + kquant::kQ4KScales, scales, mins);
        const __m256i scale_words = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(scales))));
        const uint8_t* qs = block + (kFive ? kquant::kQ5KQs : kquant::kQ4KQs);
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kquant::kQ5KQh));
        #pragma GCC unroll 4
        for (int r = 0; r < R; ++r) isum[r] = _mm256_setzero_si256();
        #pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {  // sub-blocks 2c (low nibbles) and 2c + 1 (high)
          const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
          __m256i low = _mm256_and_si256(packed, low_mask);
          __m256i high = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_mask);
          if constexpr (kFive) {
            low = _mm256_or_si256(low, bit_to_16(qh, 2 * c));
            high = _mm256_or_si256(high, bit_to_16(qh, 2 * c + 1));
          }
          const __m256i low_scale = _mm256_shuffle_epi8(scale_words, word_control(2 * c));
          const __m256i high_scale = _mm256_shuffle_epi8(scale_words, word_control(2 * c + 1));
          #pragma GCC unroll 4
          for (int r = 0; r < R; ++r) {
            const int8_t* xq = records[r]->q + 64 * c;
            const __m256i low_pairs = _mm256_maddubs_epi16(low, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq)));
            const __m256i high_pairs = _mm256_maddubs_epi16(high, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32)));
            isum[r] = _mm256_add_epi32(isum[r], _mm256_add_epi32(_mm256_madd_epi16(low_pairs, low_scale),
                                                                 _mm256_madd_epi16(high_pairs, high_scale)));
          }
        }
        int32_t d_dmin;  // the two f16 scales
        std::memcpy(&d_dmin, block, sizeof d_dmin);
        d = _mm_cvtph_ps(_mm_cvtsi32_si128(d_dmin));
        const __m128i min_words = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(mins)));
        #pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const __m128i imin = _mm_madd_epi16(min_words, _mm_loadu_si128(reinterpret_cast<const __m128i*>(records[r]->sums)));
          const __m128 dmin_dx = _mm_movehdup_ps(_mm_mul_ps(d, _mm_set1_ps(records[r]->d)));
          acc[j][r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(_mm256_zextsi128_si256(imin)), _mm256_broadcastss_ps(dmin_dx),
                                       acc[j][r]);
        }
      }
      #pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m128 d_dx = _mm_mul_ps(d, _mm_set1_ps(records[r]->d));
        acc[j][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_broadcastss_ps(d_dx), acc[j][r]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o + j)] = horizontal_sum(acc[j][r]);
  }
}

template <DType T, int R>
void rows_of(const float* prepared, size_t x_stride, const void* w, int in, int o_begin, int o_end, float* y,
             size_t ldy) {
  constexpr int kOutRows = R == 1 ? 4 : R == 2 ? 2 : 1;  // accumulators + isums fit the 16 registers
  int o = o_begin;
  for (; o + kOutRows <= o_end; o += kOutRows) block_rows<T, R, kOutRows>(prepared, x_stride, w, in, o, y, ldy);
  for (; o < o_end; ++o) block_rows<T, R, 1>(prepared, x_stride, w, in, o, y, ldy);
}

template <DType T>
void typed_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y, size_t ldy) {
  const size_t x_stride = kquant_row_floats(in);
  for (int r0 = 0; r0 < rows; r0 += 4) {
    const float* x_group = prepared + static_cast<size_t>(r0) * x_stride;
    float* y_group = y + static_cast<size_t>(r0) * ldy;
    switch (std::min(4, rows - r0)) {
      case 1: rows_of<T, 1>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 2: rows_of<T, 2>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 3: rows_of<T, 3>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      default: rows_of<T, 4>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
    }
  }
}

inline int32_t sum_lanes(__m256i v) {
  const __m128i sum4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  const __m128i sum2 = _mm_add_epi32(sum4, _mm_unpackhi_epi64(sum4, sum4));
  return _mm_cvtsi128_si32(_mm_add_epi32(sum2, _mm_shuffle_epi32(sum2, 1)));
}

// One row of n values into natural-order records: the same integers and scales as
// scalar::quantize_activations_q8_k, bit for bit.
void fill_records(const float* x, int n, DType w_type, KquantActivations* records) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i limit = _mm256_set1_epi32(127);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int b = 0; b < n / 256; ++b) {
    const float* block = x + static_cast<size_t>(b) * 256;
    KquantActivations& record = records[b];
    __m256 max_abs = _mm256_setzero_ps();
    for (int k = 0; k < 32; ++k) max_abs = _mm256_max_ps(max_abs, _mm256_and_ps(_mm256_loadu_ps(block + 8 * k), abs_mask));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(max_abs), _mm256_extractf128_ps(max_abs, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    const float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    std::memset(record.unused, 0, sizeof record.unused);
    if (!(amax > 0.0f)) {  // all zero
      std::memset(record.q, 0, sizeof record.q);
      std::memset(record.sums, 0, sizeof record.sums);
      std::memset(record.starts, 0, sizeof record.starts);
      record.d = 0.0f;
      continue;
    }
    float max = 0.0f;  // the first value of that magnitude, as the scalar quantizer keeps
    for (int i = 0; i < 256; ++i) {
      if (std::fabs(block[i]) == amax) {
        max = block[i];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 iscale_v = _mm256_set1_ps(iscale);
    int32_t group_sums[16];
    for (int k = 0; k < 8; ++k) {  // 32 values: four vectors, packed to bytes in order
      __m256i q[4];
      for (int v = 0; v < 4; ++v) {
        q[v] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(block + 32 * k + 8 * v), iscale_v)), limit);
      }
      group_sums[2 * k] = sum_lanes(_mm256_add_epi32(q[0], q[1]));
      group_sums[2 * k + 1] = sum_lanes(_mm256_add_epi32(q[2], q[3]));
      const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(record.q + 32 * k), _mm256_permutevar8x32_epi32(bytes, order));
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

}  // namespace

size_t kquant_scratch(int rows, int in) { return static_cast<size_t>(rows) * kquant_row_floats(in); }

const float* kquant_prepare(const float* x, int rows, int in, DType w_type, float* scratch) {
  const size_t n_in = static_cast<size_t>(in);
  for (int r = 0; r < rows; ++r) {
    fill_records(x + static_cast<size_t>(r) * n_in, in, w_type,
                 reinterpret_cast<KquantActivations*>(scratch + static_cast<size_t>(r) * kquant_row_floats(in)));
  }
  return scratch;
}

void kquant_rows(const float* prepared, int rows, const void* w, DType w_type, int in, int o_begin, int o_end, float* y,
                 size_t ldy) {
  switch (w_type) {
    case DType::Q4_K: typed_rows<DType::Q4_K>(prepared, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q5_K: typed_rows<DType::Q5_K>(prepared, rows, w, in, o_begin, o_end, y, ldy); break;
    default: typed_rows<DType::Q6_K>(prepared, rows, w, in, o_begin, o_end, y, ldy); break;
  }
}

}  // namespace llama31::kernels::avx2
