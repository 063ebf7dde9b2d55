// Q8_0_R16, Q8_0 repacked once into the AVX-512 VNNI kernels' panels of 16 rows: packing is exact both
// ways, the scalar twin gives bit for bit what it gives for the Q8_0 rows, the AVX-512 kernel gives bit for
// bit what the Q8_0 prefill kernel gives (same panels, same order of sums) for any number of rows, decode
// rows included, every level agrees with the scalar twin, and shapes that are not whole panels are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernel_test_support.h"
#include "kernels/kernels.h"
#include "kernels/scalar.h"
#include "util/error.h"

namespace llama31::kernels {
namespace {

using testing::describe;
using testing::expect_close;
using testing::KernelSettingsGuard;
using testing::random_floats;
using testing::Shape;

std::vector<uint8_t> q8_0_rows(int out, int in, uint32_t seed) {
  const std::vector<float> source = random_floats(static_cast<size_t>(out) * in, seed);
  const size_t row = row_bytes(DType::Q8_0, in);
  std::vector<uint8_t> bytes(static_cast<size_t>(out) * row);
  for (int o = 0; o < out; ++o) {
    quantize_row_q8_0(source.data() + static_cast<size_t>(o) * in, static_cast<size_t>(in), bytes.data() + o * row);
  }
  return bytes;
}

std::vector<uint8_t> packed(const std::vector<uint8_t>& rows, int out, int in) {
  std::vector<uint8_t> result(rows.size());
  pack_q8_0_r16(rows.data(), out, in, result.data());
  return result;
}

std::vector<Shape> shapes() {
  std::vector<Shape> result;
  for (int rows : {1, 2, 3, 5, 7, 16, 17, 40}) {
    for (int out : {16, 48, 64, 80, 208}) {
      for (int in : {64, 128, 576, 1024}) result.push_back({rows, out, in});
    }
  }
  return result;
}

// sum |x_i w_i| per output, over the quantized operands: the scale of a product's rounding error.
std::vector<double> magnitudes(const std::vector<float>& x, const std::vector<uint8_t>& w, Shape s) {
  const size_t row = row_bytes(DType::Q8_0, s.in);
  std::vector<float> w_values(static_cast<size_t>(s.in));
  std::vector<double> result(static_cast<size_t>(s.rows) * s.out, 0.0);
  for (int o = 0; o < s.out; ++o) {
    convert_to_f32(DType::Q8_0, w.data() + o * row, w_values.data(), w_values.size());
    for (int r = 0; r < s.rows; ++r) {
      for (int i = 0; i < s.in; ++i) {
        result[static_cast<size_t>(r) * s.out + o] +=
            std::fabs(static_cast<double>(x[static_cast<size_t>(r) * s.in + i]) * w_values[static_cast<size_t>(i)]);
      }
    }
  }
  return result;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Q8_0_R16, PackingIsExactBothWaysAndKeepsTheBytesPerRow) {
  const int out = 48, in = 320;
  const std::vector<uint8_t> rows = q8_0_rows(out, in, 3);
  const std::vector<uint8_t> panels = packed(rows, out, in);
  EXPECT_EQ(static_cast<size_t>(out) * row_bytes(DType::Q8_0_R16, in), panels.size());
  EXPECT_NE(rows, panels);  // a different layout of the same bytes' worth
  const size_t row = row_bytes(DType::Q8_0, in);
  std::vector<uint8_t> back(row);
  for (int o = 0; o < out; ++o) {
    unpack_q8_0_r16_row(panels.data(), in, o, back.data());
    EXPECT_EQ(0, std::memcmp(back.data(), rows.data() + o * row, row)) << "row " << o;
  }
  // Row 17's value 5 of block 2 is panel 1, block 2, step 1, lane 1, byte 1, plus 128.
  const auto* values = reinterpret_cast<const int8_t*>(rows.data() + 17 * row + quant_values_offset(in));
  const uint8_t stored = panels[q8_0_r16_panel_bytes(in) + 2 * 512 + 1 * 64 + 1 * 4 + 1];
  EXPECT_EQ(static_cast<int>(values[2 * 32 + 5]) + 128, static_cast<int>(stored));
}

TEST(Q8_0_R16, ShapesThatAreNotWholePanelsAreRefused) {
  EXPECT_FALSE(q8_0_r16_fits(40, 128));
  EXPECT_FALSE(q8_0_r16_fits(48, 96));
  EXPECT_TRUE(q8_0_r16_fits(48, 128));
  std::vector<uint8_t> rows = q8_0_rows(40, 128, 4);
  std::vector<uint8_t> out(rows.size());
  EXPECT_THROW(pack_q8_0_r16(rows.data(), 40, 128, out.data()), Error);
  std::vector<float> x(128, 0.5f), y(40);
  EXPECT_THROW(matmul(x.data(), 1, rows.data(), DType::Q8_0_R16, 40, 128, y.data()), Error);
  float value = 0.0f;
  EXPECT_THROW(convert_to_f32(DType::Q8_0_R16, rows.data(), &value, 1), Error);
}

TEST(Q8_0_R16, ScalarTwinGivesTheQ8_0RowsBitForBit) {
  uint32_t seed = 10;
  for (Shape s : shapes()) {
    const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
    const std::vector<uint8_t> rows = q8_0_rows(s.out, s.in, seed++);
    std::vector<float> expected(static_cast<size_t>(s.rows) * s.out, NAN), y(expected.size(), NAN);
    scalar::matmul(x.data(), s.rows, rows.data(), DType::Q8_0, s.out, s.in, expected.data());
    scalar::matmul(x.data(), s.rows, packed(rows, s.out, s.in).data(), DType::Q8_0_R16, s.out, s.in, y.data());
    EXPECT_TRUE(same_bits(expected, y)) << describe("scalar", s);
  }
}

TEST(Q8_0_R16, Avx512KernelGivesTheQ8_0PrefillKernelsBitsForEveryRowCount) {
  KernelSettingsGuard guard;
  const auto levels = available_isas();
  if (std::find(levels.begin(), levels.end(), "avx512") == levels.end()) GTEST_SKIP() << "no AVX-512 here";
  set_isa("avx512");
  uint32_t seed = 200;
  for (Shape s : shapes()) {
    const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
    const std::vector<uint8_t> rows = q8_0_rows(s.out, s.in, seed++);
    const std::vector<uint8_t> panels = packed(rows, s.out, s.in);
    std::vector<float> expected(static_cast<size_t>(s.rows) * s.out, NAN);
    matmul_gemm(x.data(), s.rows, rows.data(), DType::Q8_0, s.out, s.in, expected.data());
    std::vector<float> gemm(expected.size(), NAN), decode(expected.size(), NAN);
    matmul_gemm(x.data(), s.rows, panels.data(), DType::Q8_0_R16, s.out, s.in, gemm.data());
    matmul(x.data(), s.rows, panels.data(), DType::Q8_0_R16, s.out, s.in, decode.data());  // small-rows path too
    EXPECT_TRUE(same_bits(expected, gemm)) << describe("avx512 gemm", s);
    EXPECT_TRUE(same_bits(expected, decode)) << describe("avx512 matmul", s);
  }
}

TEST(Q8_0_R16, EveryLevelMatchesTheScalarTwin) {
  KernelSettingsGuard guard;
  uint32_t seed = 400;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    for (Shape s : {Shape{1, 64, 512}, Shape{4, 208, 1024}, Shape{17, 80, 576}, Shape{33, 48, 128}}) {
      const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
      const std::vector<uint8_t> rows = q8_0_rows(s.out, s.in, seed++);
      const std::vector<uint8_t> panels = packed(rows, s.out, s.in);
      std::vector<float> reference(static_cast<size_t>(s.rows) * s.out, NAN), y(reference.size(), NAN);
      scalar::matmul(x.data(), s.rows, panels.data(), DType::Q8_0_R16, s.out, s.in, reference.data());
      matmul(x.data(), s.rows, panels.data(), DType::Q8_0_R16, s.out, s.in, y.data());
      // Exact integer blocks; only the fp32 scaling and summing of the blocks may round differently.
      expect_close(y, std::vector<double>(reference.begin(), reference.end()), magnitudes(x, rows, s), 1e-5,
                   describe(level, s));
    }
  }
}

TEST(Q8_0_R16, ResultDoesNotDependOnThreadCount) {
  KernelSettingsGuard guard;
  const Shape s{9, 1024, 512};
  const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, 600);
  const std::vector<uint8_t> panels = packed(q8_0_rows(s.out, s.in, 601), s.out, s.in);
  for (const std::string& level : available_isas()) {
    set_isa(level);
    std::vector<float> one(static_cast<size_t>(s.rows) * s.out, NAN), two(one.size(), NAN);
    set_num_threads(1);
    matmul_gemm(x.data(), s.rows, panels.data(), DType::Q8_0_R16, s.out, s.in, one.data());
    set_num_threads(2);
    matmul_gemm(x.data(), s.rows, panels.data(), DType::Q8_0_R16, s.out, s.in, two.data());
    EXPECT_TRUE(same_bits(one, two)) << level;
  }
}

TEST(Q8_0_R16, OnlyAvx512AsksForThePanels) {
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    const DType expected = level == "avx512" ? DType::Q8_0_R16 : DType::Q8_0;
    EXPECT_EQ(expected, packed_weight_type(DType::Q8_0, 4096, 4096)) << level;
    EXPECT_EQ(DType::Q8_0, packed_weight_type(DType::Q8_0, 4100, 4096)) << level;  // not whole panels
    EXPECT_EQ(DType::BF16, packed_weight_type(DType::BF16, 4096, 4096)) << level;
  }
}

}  // namespace
}  // namespace llama31::kernels
