// FP8 E4M3 weights (torch float8_e4m3fn bytes, no scale): the scalar twin against float64 of the decoded
// values, every SIMD level against the scalar twin on both row paths, row independence of the prefill
// kernel, thread-count independence, and every non-NaN code decoding exactly through the kernels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernel_test_support.h"
#include "kernels/kernels.h"
#include "kernels/scalar.h"

namespace llama31::kernels {
namespace {

using testing::describe;
using testing::expect_close;
using testing::float64_products;
using testing::KernelSettingsGuard;
using testing::random_floats;
using testing::Shape;

// Tolerance relative to sum |x_i w_i|: both sides sum fp32 products of the exact weight values in
// different orders (the SIMD levels in vector lanes), as for the float weight types.
constexpr double kRelative = 1e-5;

struct Fp8Weights {
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // what each byte decodes to
};

// Random e4m3 codes, every sign, exponent and mantissa (subnormals and zero included), never the NaN
// codes 0x7f / 0xff.
Fp8Weights random_fp8(size_t n, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_int_distribution<int> code(0, 255);
  Fp8Weights w;
  w.bytes.resize(n);
  w.values.resize(n);
  for (size_t i = 0; i < n; ++i) {
    uint8_t b = 0x7f;
    while ((b & 0x7f) == 0x7f) b = static_cast<uint8_t>(code(generator));
    w.bytes[i] = b;
    w.values[i] = f8e4m3_to_f32(b);
  }
  return w;
}

std::vector<Shape> fp8_shapes() {
  std::vector<Shape> result;
  for (int rows : {1, 2, 3, 4, 5, 16, 17, 100}) {
    for (int out : {1, 13, 71, 131}) {
      for (int in : {1, 7, 32, 64, 100, 288, 545}) result.push_back({rows, out, in});
    }
  }
  return result;
}

TEST(Fp8Matmul, ScalarTwinMatchesFloat64OfTheDecodedWeights) {
  uint32_t seed = 1;
  for (Shape s : fp8_shapes()) {
    const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
    const Fp8Weights w = random_fp8(static_cast<size_t>(s.out) * s.in, seed++);
    std::vector<double> expected, scale;
    float64_products(x, w.values, s, expected, scale);
    std::vector<float> y(expected.size(), NAN);
    scalar::matmul(x.data(), s.rows, w.bytes.data(), DType::F8_E4M3, s.out, s.in, y.data());
    expect_close(y, expected, scale, kRelative, describe("scalar", s));
  }
}

TEST(Fp8Matmul, EverySimdLevelMatchesTheScalarTwinOnBothRowPaths) {
  KernelSettingsGuard guard;
  const auto levels = testing::simd_levels();
  if (levels.empty()) GTEST_SKIP() << "this CPU has no SIMD level";
  for (const std::string& level : levels) {
    set_isa(level);
    uint32_t seed = 500;
    for (Shape s : fp8_shapes()) {
      const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
      const Fp8Weights w = random_fp8(static_cast<size_t>(s.out) * s.in, seed++);
      std::vector<double> expected, scale;
      float64_products(x, w.values, s, expected, scale);
      std::vector<float> scalar_y(expected.size(), NAN), y(expected.size(), NAN), gemm(expected.size(), NAN);
      scalar::matmul(x.data(), s.rows, w.bytes.data(), DType::F8_E4M3, s.out, s.in, scalar_y.data());
      const std::vector<double> twin(scalar_y.begin(), scalar_y.end());
      matmul(x.data(), s.rows, w.bytes.data(), DType::F8_E4M3, s.out, s.in, y.data());
      expect_close(y, twin, scale, kRelative, describe(level, s));
      matmul_gemm(x.data(), s.rows, w.bytes.data(), DType::F8_E4M3, s.out, s.in, gemm.data());
      expect_close(gemm, twin, scale, kRelative, describe(level + " gemm", s));
    }
  }
}

// One x element of 1 against a row of a single non-zero code: the product is that code's value exactly,
// so every level's widening must decode each non-NaN code (normals, subnormals, both zeros) exactly.
TEST(Fp8Matmul, EveryCodeDecodesExactlyOnEveryLevel) {
  KernelSettingsGuard guard;
  const int out = 256, in = 40;
  std::vector<uint8_t> w(static_cast<size_t>(out) * in, 0);
  for (int o = 0; o < out; ++o) w[static_cast<size_t>(o) * in + static_cast<size_t>(o % in)] = static_cast<uint8_t>(o);
  for (const std::string& level : available_isas()) {
    set_isa(level);
    for (int rows : {1, 20}) {  // both row paths
      std::vector<float> x(static_cast<size_t>(rows) * in, 0.0f);
      for (int r = 0; r < rows; ++r) {
        for (int i = 0; i < in; ++i) x[static_cast<size_t>(r) * in + i] = 1.0f;
      }
      std::vector<float> y(static_cast<size_t>(rows) * out, NAN);
      matmul(x.data(), rows, w.data(), DType::F8_E4M3, out, in, y.data());
      for (int o = 0; o < out; ++o) {
        if ((o & 0x7f) == 0x7f) continue;  // NaN codes: not honoured
        for (int r = 0; r < rows; ++r) {
          EXPECT_EQ(y[static_cast<size_t>(r) * out + o], f8e4m3_to_f32(static_cast<uint8_t>(o)))
              << level << " rows=" << rows << " code " << o;
        }
      }
    }
  }
}

TEST(Fp8Matmul, ResultDoesNotDependOnThreadCount) {
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    uint32_t seed = 900;
    for (Shape s : {Shape{1, 1100, 512}, Shape{3, 701, 288}, Shape{16, 300, 544}, Shape{33, 300, 256}}) {
      const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
      const Fp8Weights w = random_fp8(static_cast<size_t>(s.out) * s.in, seed++);
      std::vector<float> one(static_cast<size_t>(s.rows) * s.out, NAN), two(one.size(), NAN);
      set_num_threads(1);
      matmul(x.data(), s.rows, w.bytes.data(), DType::F8_E4M3, s.out, s.in, one.data());
      set_num_threads(2);
      matmul(x.data(), s.rows, w.bytes.data(), DType::F8_E4M3, s.out, s.in, two.data());
      EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float))) << describe(level, s);
    }
  }
}

// The decode kernel's rows do not depend on how many rows come together, nor on where a range of outputs
// starts (a lone output row against the same row among many).
TEST(Fp8Matmul, EachDecodeRowIsBitwiseIndependentOfTheOtherRowsAndOutputs) {
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    const int out = 150, in = 320, rows = small_rows();
    const auto x = random_floats(static_cast<size_t>(rows) * in, 31);
    const Fp8Weights w = random_fp8(static_cast<size_t>(out) * in, 32);
    std::vector<float> all(static_cast<size_t>(rows) * out);
    matmul(x.data(), rows, w.bytes.data(), DType::F8_E4M3, out, in, all.data());
    for (int r = 0; r < rows; r += 3) {
      std::vector<float> one(static_cast<size_t>(out));
      matmul(x.data() + static_cast<size_t>(r) * in, 1, w.bytes.data(), DType::F8_E4M3, out, in, one.data());
      EXPECT_EQ(0, std::memcmp(one.data(), all.data() + static_cast<size_t>(r) * out, one.size() * sizeof(float)))
          << level << " row " << r;
      for (int o : {0, 5, 67, 149}) {  // output o alone: W from its row on
        float single = NAN;
        matmul(x.data() + static_cast<size_t>(r) * in, 1, w.bytes.data() + static_cast<size_t>(o) * in, DType::F8_E4M3,
               1, in, &single);
        EXPECT_EQ(single, all[static_cast<size_t>(r) * out + o]) << level << " row " << r << " output " << o;
      }
    }
  }
}

TEST(Fp8Matmul, EachPrefillRowIsBitwiseIndependentOfTheOtherRows) {
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    const int out = 100, in = 545, rows = 23;
    const auto x = random_floats(static_cast<size_t>(rows) * in, 77);
    const Fp8Weights w = random_fp8(static_cast<size_t>(out) * in, 78);
    std::vector<float> all(static_cast<size_t>(rows) * out);
    matmul_gemm(x.data(), rows, w.bytes.data(), DType::F8_E4M3, out, in, all.data());
    for (int r = 0; r < rows; r += 5) {  // alone, and as the last of a group of three
      std::vector<float> one(static_cast<size_t>(out));
      matmul_gemm(x.data() + static_cast<size_t>(r) * in, 1, w.bytes.data(), DType::F8_E4M3, out, in, one.data());
      EXPECT_EQ(0, std::memcmp(one.data(), all.data() + static_cast<size_t>(r) * out, one.size() * sizeof(float)))
          << level << " row " << r;
      if (r >= 2) {
        std::vector<float> three(static_cast<size_t>(3) * out);
        matmul_gemm(x.data() + static_cast<size_t>(r - 2) * in, 3, w.bytes.data(), DType::F8_E4M3, out, in,
                    three.data());
        EXPECT_EQ(0, std::memcmp(three.data() + 2 * out, all.data() + static_cast<size_t>(r) * out,
                                 static_cast<size_t>(out) * sizeof(float)))
            << level << " row " << r;
      }
    }
  }
}

}  // namespace
}  // namespace llama31::kernels
