// llama.cpp's K-quant super-blocks (GGML_TYPE_Q4_K, Q5_K, Q6_K) as GGUF stores them, which is also how
// DType::Q4_K / Q5_K / Q6_K rows hold them in memory: a row of n values (n a multiple of 256) is n / 256
// super-blocks one after another, each exactly as in the file. Byte layouts (as ggml-common.h declares the
// structs, no padding):
//   Q4_K 144: d f16 @0, dmin f16 @2, scales[12] @4, qs[128] @16
//   Q5_K 176: d f16 @0, dmin f16 @2, scales[12] @4, qh[32] @16, qs[128] @48
//   Q6_K 210: ql[128] @0, qh[64] @128, scales int8[16] @192, d f16 @208
// Q4_K / Q5_K: eight sub-blocks of 32 with a 6-bit scale and a 6-bit min each (packed into 12 bytes, see
// scale_min); value = (d * scale) * q - (dmin * min), q 4 bits (Q5_K: plus a 5th from qh). qs byte 32c + l
// holds value 64c + l in its low nibble and value 64c + 32 + l in its high one; Q5_K's 5th bit of value
// 64c + l is bit 2c of qh[l], of value 64c + 32 + l bit 2c + 1.
// Q6_K: sixteen groups of 16 with an int8 scale each; value = (d * scale) * (q - 32), q 6 bits. Per half
// of 128 values (ql from 64 * half, qh from 128 + 32 * half): ql byte l holds values l (low nibble) and
// l + 64 (high), ql byte l + 32 values l + 32 and l + 96; qh[l] the top two bits of values l, l + 32, l + 64,
// l + 96 at bits 0, 2, 4, 6. Value v of the half belongs to group 8 * half + v / 16.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llama31::kquant {

inline constexpr int kBlockValues = 256;
inline constexpr size_t kQ4KBytes = 144, kQ5KBytes = 176, kQ6KBytes = 210;
inline constexpr size_t kQ4KScales = 4, kQ4KQs = 16;            // Q5_K shares d, dmin and scales
inline constexpr size_t kQ5KQh = 16, kQ5KQs = 48;
inline constexpr size_t kQ6KQh = 128, kQ6KScales = 192, kQ6KD = 208;

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block from its 12 packed bytes:
// j < 4 keep them in the low 6 bits of bytes j and j + 4; j >= 4 split them into a nibble of byte j + 4
// (scale low, min high) and the top 2 bits of bytes j - 4 (scale) and j (min).
inline void scale_min(int j, const uint8_t* packed, uint8_t& scale, uint8_t& min) {
  const auto u = static_cast<size_t>(j);
  if (j < 4) {
    scale = packed[u] & 63;
    min = packed[u + 4] & 63;
  } else {
    scale = static_cast<uint8_t>((packed[u + 4] & 0xF) | ((packed[u - 4] >> 6) << 4));
    min = static_cast<uint8_t>((packed[u + 4] >> 4) | ((packed[u] >> 6) << 4));
  }
}

// All eight at once, as two little-endian words of bytes (scale j / min j in byte j): the same values
// as scale_min, with a few word operations instead of a branch per sub-block (the kernels run it once per
// super-block of every weight row).
inline void scales_mins(const uint8_t* packed, uint64_t& scales, uint64_t& mins) {
  uint32_t a, b, c;  // bytes 0-3, 4-7, 8-11
  __builtin_memcpy(&a, packed, 4);
  __builtin_memcpy(&b, packed + 4, 4);
  __builtin_memcpy(&c, packed + 8, 4);
  const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, top2 = 0xc0c0c0c0u;
  const uint32_t scales_low = a & low6;                                  // sub-blocks 0-3
  const uint32_t mins_low = b & low6;
  const uint32_t scales_high = (c & low4) | ((a & top2) >> 2);           // 4-7: nibble | top bits << 4
  const uint32_t mins_high = ((c >> 4) & low4) | ((b & top2) >> 2);
  scales = scales_low | (static_cast<uint64_t>(scales_high) << 32);
  mins = mins_low | (static_cast<uint64_t>(mins_high) << 32);
}

// The 256 values of one super-block, each computed in the order llama.cpp's dequantize_row_* computes it
// (so the floats are identical).
void dequantize_q4_k(const uint8_t* block, float* y);
void dequantize_q5_k(const uint8_t* block, float* y);
void dequantize_q6_k(const uint8_t* block, float* y);

}  // namespace llama31::kquant
