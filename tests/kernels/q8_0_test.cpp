// Q8_0 weights: rounding as llama.cpp's quantizer, the scalar twin against float64 of the quantized
// operands (x quantized per block of 32 on every path), every SIMD level against the scalar twin on both
// row paths, row independence of the prefill kernel, and thread-count independence.
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
using testing::float64_products;
using testing::KernelSettingsGuard;
using testing::random_floats;
using testing::Shape;

struct Q8Weights {
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // what each element decodes to
};

Q8Weights store_q8_0(const std::vector<float>& source, int out, int in) {
  Q8Weights w;
  const size_t row = row_bytes(DType::Q8_0, in);
  w.bytes.resize(static_cast<size_t>(out) * row);
  w.values.resize(source.size());
  for (int o = 0; o < out; ++o) {
    quantize_row_q8_0(source.data() + static_cast<size_t>(o) * in, static_cast<size_t>(in), w.bytes.data() + o * row);
    convert_to_f32(DType::Q8_0, w.bytes.data() + o * row, w.values.data() + static_cast<size_t>(o) * in,
                   static_cast<size_t>(in));
  }
  return w;
}

std::vector<Shape> q8_0_shapes() {
  std::vector<Shape> result;
  for (int rows : {1, 2, 3, 4, 5, 8, 16, 17, 33}) {
    for (int out : {1, 13, 70, 131}) {
      for (int in : {32, 64, 96, 288, 544}) result.push_back({rows, out, in});
    }
  }
  return result;
}

TEST(Q8_0, WeightsRoundAsLlamaCppsQuantizerAndDecode) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;  // scale 1: values round to integers, halves away from zero (roundf)
  x[1] = 0.5f;
  x[2] = -0.5f;
  x[3] = 2.5f;
  x[4] = -3.4f;
  std::vector<uint8_t> row(row_bytes(DType::Q8_0, 32));
  ASSERT_EQ(row.size(), 34u);
  quantize_row_q8_0(x.data(), 32, row.data());
  uint16_t scale = 0;
  std::memcpy(&scale, row.data(), 2);
  EXPECT_EQ(f16_to_f32(scale), 1.0f);
  const auto* q = reinterpret_cast<const int8_t*>(row.data() + 2);
  EXPECT_EQ(q[0], 127);
  EXPECT_EQ(q[1], 1);
  EXPECT_EQ(q[2], -1);
  EXPECT_EQ(q[3], 3);
  EXPECT_EQ(q[4], -3);
  std::vector<float> back(32);
  convert_to_f32(DType::Q8_0, row.data(), back.data(), 32);
  EXPECT_EQ(back[4], -3.0f);
}

TEST(Q8_0, ActivationsRoundToNearestEvenPerBlock) {
  std::vector<float> x(64, 0.0f);
  x[0] = -127.0f;
  x[1] = 0.5f;
  x[2] = 1.5f;
  x[3] = 2.5f;
  x[32] = 0.25f;  // second block: its own scale
  std::vector<int8_t> q(64);
  std::vector<float> scales(2);
  scalar::quantize_activations_q8(x.data(), 64, q.data(), scales.data());
  EXPECT_EQ(scales[0], 1.0f);
  EXPECT_EQ(q[0], -127);
  EXPECT_EQ(q[1], 0);
  EXPECT_EQ(q[2], 2);
  EXPECT_EQ(q[3], 2);
  EXPECT_EQ(q[32], 127);
  EXPECT_FLOAT_EQ(scales[1], 0.25f / 127.0f);
}

TEST(Q8_0, ScalarTwinMatchesFloat64OfTheQuantizedOperands) {
  uint32_t seed = 1;
  for (Shape s : q8_0_shapes()) {
    const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
    const Q8Weights w = store_q8_0(random_floats(static_cast<size_t>(s.out) * s.in, seed++), s.out, s.in);
    const std::vector<float> xe = q8_blocks_effective_x(x, s);
    std::vector<double> expected, scale;
    float64_products(xe, w.values, s, expected, scale);
    std::vector<float> y(expected.size(), NAN);
    scalar::matmul(x.data(), s.rows, w.bytes.data(), DType::Q8_0, s.out, s.in, y.data());
    expect_close(y, expected, scale, 1e-5, describe("scalar", s));
  }
}

TEST(Q8_0, EverySimdLevelMatchesTheScalarTwin) {
  KernelSettingsGuard guard;
  const auto levels = testing::simd_levels();
  if (levels.empty()) GTEST_SKIP() << "this CPU has no SIMD level";
  for (const std::string& level : levels) {
    set_isa(level);
    uint32_t seed = 500;
    for (Shape s : q8_0_shapes()) {
      const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
      const Q8Weights w = store_q8_0(random_floats(static_cast<size_t>(s.out) * s.in, seed++), s.out, s.in);
      const std::vector<float> xe = q8_blocks_effective_x(x, s);
      std::vector<double> scale(static_cast<size_t>(s.rows) * s.out);
      for (int r = 0; r < s.rows; ++r) {
        for (int o = 0; o < s.out; ++o) {
          for (int i = 0; i < s.in; ++i) {
            scale[static_cast<size_t>(r) * s.out + o] +=
                std::fabs(static_cast<double>(xe[static_cast<size_t>(r) * s.in + i]) * w.values[static_cast<size_t>(o) * s.in + i]);
          }
        }
      }
      std::vector<float> reference(scale.size()), y(scale.size(), NAN);
      scalar::matmul(x.data(), s.rows, w.bytes.data(), DType::Q8_0, s.out, s.in, reference.data());
      matmul(x.data(), s.rows, w.bytes.data(), DType::Q8_0, s.out, s.in, y.data());
      expect_close(y, std::vector<double>(reference.begin(), reference.end()), scale, 1e-5, describe(level, s));
      // The prefill kernel, whatever the row count: the same products.
      std::vector<float> gemm(scale.size(), NAN);
      matmul_gemm(x.data(), s.rows, w.bytes.data(), DType::Q8_0, s.out, s.in, gemm.data());
      expect_close(gemm, std::vector<double>(reference.begin(), reference.end()), scale, 1e-5,
                   describe(level + " gemm", s));
    }
  }
}

TEST(Q8_0, ResultDoesNotDependOnThreadCount) {
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    uint32_t seed = 900;
    for (Shape s : {Shape{1, 1100, 512}, Shape{4, 700, 288}, Shape{33, 300, 256}}) {
      const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
      const Q8Weights w = store_q8_0(random_floats(static_cast<size_t>(s.out) * s.in, seed++), s.out, s.in);
      std::vector<float> one(static_cast<size_t>(s.rows) * s.out, NAN), two(one.size(), NAN);
      set_num_threads(1);
      matmul(x.data(), s.rows, w.bytes.data(), DType::Q8_0, s.out, s.in, one.data());
      set_num_threads(2);
      matmul(x.data(), s.rows, w.bytes.data(), DType::Q8_0, s.out, s.in, two.data());
      EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float))) << describe(level, s);
    }
  }
}

TEST(Q8_0, EachPrefillRowIsBitwiseIndependentOfTheOtherRows) {
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    const int out = 100, in = 544, rows = 23;
    const auto x = random_floats(static_cast<size_t>(rows) * in, 77);
    const Q8Weights w = store_q8_0(random_floats(static_cast<size_t>(out) * in, 78), out, in);
    std::vector<float> all(static_cast<size_t>(rows) * out);
    matmul_gemm(x.data(), rows, w.bytes.data(), DType::Q8_0, out, in, all.data());
    for (int r = 0; r < rows; r += 5) {  // alone, and as the last of a group of three
      std::vector<float> one(static_cast<size_t>(out));
      matmul_gemm(x.data() + static_cast<size_t>(r) * in, 1, w.bytes.data(), DType::Q8_0, out, in, one.data());
      EXPECT_EQ(0, std::memcmp(one.data(), all.data() + static_cast<size_t>(r) * out, one.size() * sizeof(float)))
          << level << " row " << r;
      if (r >= 2) {
        std::vector<float> three(static_cast<size_t>(3) * out);
        matmul_gemm(x.data() + static_cast<size_t>(r - 2) * in, 3, w.bytes.data(), DType::Q8_0, out, in, three.data());
        EXPECT_EQ(0, std::memcmp(three.data() + 2 * out, all.data() + static_cast<size_t>(r) * out, static_cast<size_t>(out) * sizeof(float)))
            << level << " row " << r;
      }
    }
  }
}

TEST(Q8_0, RowsThatAreNotWholeBlocksAreRefused) {
  std::vector<float> x(40, 1.0f), y(1);
  std::vector<uint8_t> w(64);
  EXPECT_THROW(matmul(x.data(), 1, w.data(), DType::Q8_0, 1, 40, y.data()), Error);
}

}  // namespace
}  // namespace llama31::kernels
