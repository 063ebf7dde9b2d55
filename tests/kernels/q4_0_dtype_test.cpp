// The Q4_0 row format (util/dtype.h): rounding as llama.cpp's reference quantizer, nibble placement,
// decoding, and the exact conversions between GGUF blocks and in-memory rows (Q4_0 and Q8_0).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernel_test_support.h"
#include "util/dtype.h"

namespace llama31 {
namespace {

uint16_t scale_bits(const std::vector<uint8_t>& row, size_t block) {
  uint16_t bits = 0;
  std::memcpy(&bits, row.data() + 2 * block, 2);
  return bits;
}

// Level of value i of block b (0..15) in an in-memory Q4_0 row of n values.
int level(const std::vector<uint8_t>& row, size_t n, size_t b, size_t i) {
  const uint8_t byte = row[n / 32 * 2 + b * 16 + i % 16];
  return i < 16 ? byte & 0x0f : byte >> 4;
}

TEST(Q4_0Format, AKnownBlockRoundsAsLlamaCppsReferenceQuantizer) {
  std::vector<float> x(32, 0.0f);
  x[0] = -4.0f;   // the largest magnitude, first: d = -4 / -8 = 0.5, x / d = 2x
  x[5] = 4.0f;    // as large, later: not the one chosen; 8 + 8.5 = 16.5 truncates to 16, clamped to 15
  x[1] = 3.9f;    // 16.3 -> 15 (clamped)
  x[2] = 0.26f;   // 9.02 -> 9
  x[3] = -0.25f;  // 8.0 -> 8
  x[4] = 0.24f;   // 8.98 -> 8 (truncation, not rounding)
  x[17] = 1.0f;   // 10.5 -> 10 (truncation of a half)
  x[31] = -3.0f;  // 2.5 -> 2
  std::vector<uint8_t> row(row_bytes(DType::Q4_0, 32));
  ASSERT_EQ(row.size(), 18u);
  quantize_row_q4_0(x.data(), 32, row.data());
  EXPECT_EQ(f16_to_f32(scale_bits(row, 0)), 0.5f);
  const int expected[32] = {0, 15, 9, 8, 8, 15, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
                            8, 10, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 2};
  for (size_t i = 0; i < 32; ++i) EXPECT_EQ(level(row, 32, 0, i), expected[i]) << "value " << i;
  EXPECT_EQ(row[2 + 1], 15 | (10 << 4));  // byte 1: value 1 low, value 17 high
  std::vector<float> back(32);
  convert_to_f32(DType::Q4_0, row.data(), back.data(), 32);
  for (size_t i = 0; i < 32; ++i) EXPECT_EQ(back[i], 0.5f * static_cast<float>(expected[i] - 8)) << "value " << i;
}

TEST(Q4_0Format, AnAllZeroBlockHasScaleMinusZeroAndLevelEight) {
  std::vector<float> x(64, 0.0f);
  x[40] = -1.0f;  // the second block is not zero
  std::vector<uint8_t> row(row_bytes(DType::Q4_0, 64));
  quantize_row_q4_0(x.data(), 64, row.data());
  EXPECT_EQ(scale_bits(row, 0), 0x8000u);  // 0 / -8 is -0, as llama.cpp stores it
  for (size_t i = 0; i < 32; ++i) EXPECT_EQ(level(row, 64, 0, i), 8);
  EXPECT_EQ(f16_to_f32(scale_bits(row, 1)), 0.125f);
  EXPECT_EQ(level(row, 64, 1, 8), 0);
}

// An independent restatement of the rule, applied to random rows: per block the signed value of largest
// magnitude m (the first such), d = m / -8 in fp32 (stored as f16), q = min(15, trunc(x * (1 / d) + 8.5)).
TEST(Q4_0Format, RandomRowsFollowTheRule) {
  const size_t n = 256;
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    const auto x = kernels::testing::random_floats(n, seed, -3.0f, 3.0f);
    std::vector<uint8_t> row(row_bytes(DType::Q4_0, static_cast<int64_t>(n)));
    quantize_row_q4_0(x.data(), n, row.data());
    for (size_t b = 0; b < n / 32; ++b) {
      size_t arg = b * 32;
      for (size_t i = b * 32; i < b * 32 + 32; ++i) {
        if (std::fabs(x[i]) > std::fabs(x[arg])) arg = i;
      }
      const float d = x[arg] / -8.0f;
      ASSERT_EQ(scale_bits(row, b), f32_to_f16(d));
      for (size_t i = 0; i < 32; ++i) {
        const float shifted = x[b * 32 + i] * (1.0f / d) + 8.5f;
        const int q = std::min(15, static_cast<int>(std::trunc(shifted)));
        ASSERT_EQ(level(row, n, b, i), q) << "seed " << seed << " block " << b << " value " << i;
      }
    }
  }
}

TEST(Q4_0Format, GgufBlocksConvertToRowsAndBackExactly) {
  const size_t n = 96;  // three blocks
  std::vector<uint8_t> blocks(n / 32 * 18);
  for (size_t k = 0; k < blocks.size(); ++k) blocks[k] = static_cast<uint8_t>(k * 37 + 11);
  for (size_t b = 0; b < n / 32; ++b) {  // finite f16 scales: 0.25, 0.5, 0.75
    const uint16_t d = f32_to_f16(0.25f * static_cast<float>(b + 1));
    std::memcpy(blocks.data() + b * 18, &d, 2);
  }
  std::vector<uint8_t> row(row_bytes(DType::Q4_0, static_cast<int64_t>(n)));
  ASSERT_EQ(row.size(), blocks.size());
  q4_0_row_from_ggml(blocks.data(), n, row.data());
  std::vector<float> values(n);
  convert_to_f32(DType::Q4_0, row.data(), values.data(), n);
  for (size_t b = 0; b < n / 32; ++b) {  // GGUF's meaning: value j low nibble of qs[j], j + 16 high nibble
    const float d = 0.25f * static_cast<float>(b + 1);
    for (size_t j = 0; j < 16; ++j) {
      const uint8_t byte = blocks[b * 18 + 2 + j];
      EXPECT_EQ(values[b * 32 + j], d * static_cast<float>((byte & 15) - 8));
      EXPECT_EQ(values[b * 32 + j + 16], d * static_cast<float>((byte >> 4) - 8));
    }
  }
  std::vector<uint8_t> back(blocks.size(), 0xee);
  q4_0_row_to_ggml(row.data(), n, back.data());
  EXPECT_EQ(back, blocks);
}

TEST(Q8_0Format, GgufBlocksConvertToRowsAndBackExactly) {
  const size_t n = 64;
  std::vector<uint8_t> blocks(n / 32 * 34);
  for (size_t k = 0; k < blocks.size(); ++k) blocks[k] = static_cast<uint8_t>(k * 29 + 3);
  for (size_t b = 0; b < n / 32; ++b) {
    const uint16_t d = f32_to_f16(0.5f * static_cast<float>(b + 1));
    std::memcpy(blocks.data() + b * 34, &d, 2);
  }
  std::vector<uint8_t> row(row_bytes(DType::Q8_0, static_cast<int64_t>(n)));
  ASSERT_EQ(row.size(), blocks.size());
  q8_0_row_from_ggml(blocks.data(), n, row.data());
  std::vector<float> values(n);
  convert_to_f32(DType::Q8_0, row.data(), values.data(), n);
  for (size_t b = 0; b < n / 32; ++b) {
    for (size_t i = 0; i < 32; ++i) {
      const auto q = static_cast<int8_t>(blocks[b * 34 + 2 + i]);
      EXPECT_EQ(values[b * 32 + i], 0.5f * static_cast<float>(b + 1) * static_cast<float>(q));
    }
  }
  std::vector<uint8_t> back(blocks.size(), 0xee);
  q8_0_row_to_ggml(row.data(), n, back.data());
  EXPECT_EQ(back, blocks);
  // quantize_row_q8_0's row, through GGUF blocks and back, is unchanged.
  const auto x = kernels::testing::random_floats(n, 5);
  std::vector<uint8_t> quantized(row.size()), gguf(blocks.size()), again(row.size());
  quantize_row_q8_0(x.data(), n, quantized.data());
  q8_0_row_to_ggml(quantized.data(), n, gguf.data());
  q8_0_row_from_ggml(gguf.data(), n, again.data());
  EXPECT_EQ(again, quantized);
}

}  // namespace
}  // namespace llama31
