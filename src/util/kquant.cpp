#include "util/kquant.h"

#include <cstring>

#include "util/dtype.h"

namespace llama31::kquant {
namespace {

float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// Q4_K / Q5_K: value = (d * scale) * q - (dmin * min) per sub-block of 32.
void dequantize_q45_k(const uint8_t* block, float* y, bool five_bits) {
  const float d = load_f16(block), dmin = load_f16(block + 2);
  const uint8_t* packed = block + kQ4KScales;
  const uint8_t* qs = block + (five_bits ? kQ5KQs : kQ4KQs);
  const uint8_t* qh = block + kQ5KQh;
  for (int c = 0; c < 4; ++c) {
    uint8_t sc, m;
    scale_min(2 * c, packed, sc, m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min(2 * c + 1, packed, sc, m);
    const float d2 = d * sc, m2 = dmin * m;
    const uint8_t* q = qs + 32 * c;
    for (int l = 0; l < 32; ++l) {
      const int high = five_bits ? ((qh[l] >> (2 * c)) & 1) << 4 : 0;
      y[64 * c + l] = d1 * static_cast<float>((q[l] & 0xF) + high) - m1;
    }
    for (int l = 0; l < 32; ++l) {
      const int high = five_bits ? ((qh[l] >> (2 * c + 1)) & 1) << 4 : 0;
      y[64 * c + 32 + l] = d2 * static_cast<float>((q[l] >> 4) + high) - m2;
    }
  }
}

}  // namespace

void dequantize_q4_k(const uint8_t* block, float* y) { dequantize_q45_k(block, y, false); }
void dequantize_q5_k(const uint8_t* block, float* y) { dequantize_q45_k(block, y, true); }

// Q6_K: value = (d * scale) * (q - 32) per group of 16.
void dequantize_q6_k(const uint8_t* block, float* y) {
  const float d = load_f16(block + kQ6KD);
  const auto* sc = reinterpret_cast<const int8_t*>(block + kQ6KScales);
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = block + 64 * half;
    const uint8_t* qh = block + kQ6KQh + 32 * half;
    const int8_t* s = sc + 8 * half;
    float* out = y + 128 * half;
    for (int l = 0; l < 32; ++l) {
      const int group = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      out[l] = d * s[group] * static_cast<float>(q1);
      out[l + 32] = d * s[group + 2] * static_cast<float>(q2);
      out[l + 64] = d * s[group + 4] * static_cast<float>(q3);
      out[l + 96] = d * s[group + 6] * static_cast<float>(q4);
    }
  }
}

}  // namespace llama31::kquant
