// The scalar twin of the K-quant kernels (kquant.h has the arithmetic), the Q8_K quantization of
// activations every level shares, and the records the SIMD levels read.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/kquant.h"
#include "util/kquant.h"

namespace llama31::kernels {
namespace {

float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// Q4_K / Q5_K super-block against one quantized super-block of x (qx, its 16 group sums, its scale).
template <bool kFiveBits>
float q45_k_block(const uint8_t* block, const int8_t* qx, const int16_t* sums, float dx) {
  uint64_t scales, mins;
  kquant::scales_mins(block + kquant::kQ4KScales, scales, mins);
  const uint8_t* qs = block + (kFiveBits ? kquant::kQ5KQs : kquant::kQ4KQs);
  const uint8_t* qh = block + kquant::kQ5KQh;
  int32_t isum = 0, imin = 0;
  for (int j = 0; j < 8; ++j) {
    const int c = j / 2, shift = 4 * (j % 2);  // qs bytes 32c..32c+31, low nibbles for even j
    int32_t sum = 0;
    for (int l = 0; l < 32; ++l) {
      int level = (qs[32 * c + l] >> shift) & 0xF;
      if constexpr (kFiveBits) level |= ((qh[l] >> j) & 1) << 4;
      sum += level * qx[32 * j + l];
    }
    isum += static_cast<int32_t>((scales >> (8 * j)) & 0xFF) * sum;
    imin += static_cast<int32_t>((mins >> (8 * j)) & 0xFF) * (sums[2 * j] + sums[2 * j + 1]);
  }
  const float d = f16_at(block), dmin = f16_at(block + 2);
  return (d * dx) * static_cast<float>(isum) - (dmin * dx) * static_cast<float>(imin);
}

// Q6_K super-block: levels q - 32 per group of 16, int8 group scales.
float q6_k_block(const uint8_t* block, const int8_t* qx, float dx) {
  const auto* group_scales = reinterpret_cast<const int8_t*>(block + kquant::kQ6KScales);
  int32_t isum = 0;
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = block + 64 * half;
    const uint8_t* qh = block + kquant::kQ6KQh + 32 * half;
    for (int g = 0; g < 8; ++g) {
      int32_t sum = 0;
      for (int v = 16 * g; v < 16 * g + 16; ++v) {
        const int quarter = v / 32, l = v % 32;  // see util/kquant.h: value l + 32 * quarter of the half
        const int low = (ql[l + 32 * (quarter & 1)] >> (quarter < 2 ? 0 : 4)) & 0xF;
        const int high = (qh[l] >> (2 * quarter)) & 3;
        sum += ((low | (high << 4)) - 32) * qx[128 * half + v];
      }
      isum += group_scales[8 * half + g] * sum;
    }
  }
  return (f16_at(block + kquant::kQ6KD) * dx) * static_cast<float>(isum);
}

}  // namespace

namespace scalar {

void quantize_activations_q8_k(const float* x, int n, int8_t* q, float* scales, int16_t* sums) {
  for (int b = 0; b < n / 256; ++b) {
    const float* block = x + static_cast<size_t>(b) * 256;
    int8_t* qb = q + static_cast<size_t>(b) * 256;
    float max_abs = 0.0f, max = 0.0f;
    for (int i = 0; i < 256; ++i) {
      if (std::fabs(block[i]) > max_abs) {
        max_abs = std::fabs(block[i]);
        max = block[i];
      }
    }
    if (max_abs == 0.0f) {
      scales[b] = 0.0f;
      std::fill(qb, qb + 256, int8_t{0});
      std::fill(sums + 16 * b, sums + 16 * b + 16, int16_t{0});
      continue;
    }
    const float iscale = -127.0f / max;
    for (int i = 0; i < 256; ++i) {
      // Round half to even by adding and removing 1.5 * 2^23 (|v| <= 127), as ggml's nearest_int.
      const float v = block[i] * iscale;
      const float rounded = (v + 12582912.0f) - 12582912.0f;
      qb[i] = static_cast<int8_t>(std::min(127, static_cast<int>(rounded)));
    }
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += qb[16 * g + i];
      sums[16 * b + g] = static_cast<int16_t>(sum);
    }
    scales[b] = 1.0f / iscale;
  }
}

void kquant_matmul_range(const float* x, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                         float* y, size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  const size_t blocks = n_in / 256;
  const size_t block_bytes = kquant_block_bytes(w_type);
  std::vector<int8_t> qx(n_in);
  std::vector<float> dx(blocks);
  std::vector<int16_t> sums(n_in / 16);
  for (int r = 0; r < rows; ++r) {
    quantize_activations_q8_k(x + static_cast<size_t>(r) * n_in, in, qx.data(), dx.data(), sums.data());
    for (int o = o_begin; o < o_end; ++o) {
      const auto* row = static_cast<const uint8_t*>(w) + static_cast<size_t>(o) * row_bytes(w_type, in);
      float sum = 0.0f;
      for (size_t b = 0; b < blocks; ++b) {
        const uint8_t* block = row + b * block_bytes;
        const int8_t* q = qx.data() + b * 256;
        switch (w_type) {
          case DType::Q4_K: sum += q45_k_block<false>(block, q, sums.data() + b * 16, dx[b]); break;
          case DType::Q5_K: sum += q45_k_block<true>(block, q, sums.data() + b * 16, dx[b]); break;
          default: sum += q6_k_block(block, q, dx[b]); break;
        }
      }
      y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o)] = sum;
    }
  }
}

}  // namespace scalar

void kquant_fill_records(const float* x, int n, DType w_type, KquantOrder order, KquantActivations* records) {
  // Sub-block k of the pairs order holds sub-block kPairs[k] of x.
  constexpr int kPairs[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  int8_t q[256];
  int16_t sums[16];
  for (int b = 0; b < n / 256; ++b) {
    KquantActivations& record = records[b];
    scalar::quantize_activations_q8_k(x + static_cast<size_t>(b) * 256, 256, q, &record.d, sums);
    if (order == KquantOrder::Natural) {
      std::memcpy(record.q, q, sizeof q);
    } else {
      for (int k = 0; k < 8; ++k) std::memcpy(record.q + 32 * k, q + 32 * kPairs[k], 32);
    }
    std::fill(std::begin(record.unused), std::end(record.unused), 0);
    for (int g = 0; g < 16; ++g) {
      if (w_type == DType::Q6_K) {
        record.sums[g] = static_cast<int16_t>(-4 * sums[g]);
        record.starts[g] = -32 * sums[g];
      } else {
        record.sums[g] = g < 8 ? static_cast<int16_t>(sums[2 * g] + sums[2 * g + 1]) : int16_t{0};
        record.starts[g] = 0;
      }
    }
  }
}

}  // namespace llama31::kernels
