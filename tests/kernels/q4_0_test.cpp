// Q4_0 weights in the kernels: the scalar twin against float64 of the quantized operands (x quantized per
// block of 32 on every path), every SIMD level against the scalar twin on both row paths (rows 1..16 take
// the decode kernel, more the prefill one; odd output counts; block counts that are and are not multiples
// of the kernels' groups), row independence of both kernels, and thread-count independence.
// Tolerance: 1e-5 of sum |x_i w_i| per output (the integer block sums are exact; only the fp32 sum of
// per-block terms differs in order between levels).
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

struct Q4Weights {
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // what each element decodes to
};

Q4Weights store_q4_0(const std::vector<float>& source, int out, int in) {
  Q4Weights w;
  const size_t row = row_bytes(DType::Q4_0, in);
  w.bytes.resize(static_cast<size_t>(out) * row);
  w.values.resize(source.size());
  for (int o = 0; o < out; ++o) {
    quantize_row_q4_0(source.data() + static_cast<size_t>(o) * in, static_cast<size_t>(in), w.bytes.data() + o * row);
    convert_to_f32(DType::Q4_0, w.bytes.data() + o * row, w.values.data() + static_cast<size_t>(o) * in,
                   static_cast<size_t>(in));
  }
  return w;
}

std::vector<Shape> q4_0_shapes() {
  std::vector<Shape> result;
  for (int rows : {1, 2, 3, 4, 5, 7, 8, 13, 16, 17, 33}) {
    for (int out : {1, 13, 70, 131}) {
      // Blocks: 1, 2, 3, 5 (partial quads), 16 and 17 (a whole group of the decode kernel, and one more).
      for (int in : {32, 64, 96, 160, 512, 544}) result.push_back({rows, out, in});
    }
  }
  return result;
}

TEST(Q4_0, ScalarTwinMatchesFloat64OfTheQuantizedOperands) {
  uint32_t seed = 11;
  for (Shape s : q4_0_shapes()) {
    const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
    const Q4Weights w = store_q4_0(random_floats(static_cast<size_t>(s.out) * s.in, seed++), s.out, s.in);
    std::vector<double> expected, scale;
    float64_products(q8_blocks_effective_x(x, s), w.values, s, expected, scale);
    std::vector<float> y(expected.size(), NAN);
    scalar::matmul(x.data(), s.rows, w.bytes.data(), DType::Q4_0, s.out, s.in, y.data());
    expect_close(y, expected, scale, 1e-5, describe("scalar", s));
  }
}

TEST(Q4_0, EverySimdLevelMatchesTheScalarTwin) {
  KernelSettingsGuard guard;
  const auto levels = testing::simd_levels();
  if (levels.empty()) GTEST_SKIP() << "this CPU has no SIMD level";
  for (const std::string& level : levels) {
    set_isa(level);
    uint32_t seed = 700;
    for (Shape s : q4_0_shapes()) {
      const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
      const Q4Weights w = store_q4_0(random_floats(static_cast<size_t>(s.out) * s.in, seed++), s.out, s.in);
      std::vector<double> expected, scale;
      float64_products(q8_blocks_effective_x(x, s), w.values, s, expected, scale);
      std::vector<float> twin(scale.size(), NAN), y(scale.size(), NAN), gemm(scale.size(), NAN);
      scalar::matmul(x.data(), s.rows, w.bytes.data(), DType::Q4_0, s.out, s.in, twin.data());
      const std::vector<double> twin_values(twin.begin(), twin.end());
      // matmul: the decode kernel up to small_rows() rows, the prefill kernel above.
      matmul(x.data(), s.rows, w.bytes.data(), DType::Q4_0, s.out, s.in, y.data());
      expect_close(y, twin_values, scale, 1e-5, describe(level, s));
      // The prefill kernel, whatever the row count: the same products.
      matmul_gemm(x.data(), s.rows, w.bytes.data(), DType::Q4_0, s.out, s.in, gemm.data());
      expect_close(gemm, twin_values, scale, 1e-5, describe(level + " gemm", s));
    }
  }
}

TEST(Q4_0, ResultDoesNotDependOnThreadCount) {
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    uint32_t seed = 1300;
    for (Shape s : {Shape{1, 1100, 512}, Shape{4, 700, 288}, Shape{16, 300, 544}, Shape{33, 300, 256}}) {
      const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
      const Q4Weights w = store_q4_0(random_floats(static_cast<size_t>(s.out) * s.in, seed++), s.out, s.in);
      for (bool gemm : {false, true}) {
        std::vector<float> one(static_cast<size_t>(s.rows) * s.out, NAN), two(one.size(), NAN);
        auto run = gemm ? matmul_gemm : matmul;
        set_num_threads(1);
        run(x.data(), s.rows, w.bytes.data(), DType::Q4_0, s.out, s.in, one.data());
        set_num_threads(2);
        run(x.data(), s.rows, w.bytes.data(), DType::Q4_0, s.out, s.in, two.data());
        EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)))
            << describe(level + (gemm ? " gemm" : ""), s);
      }
    }
  }
}

// Each row of y, computed with others or alone, is bitwise the same: the decode kernel (up to
// small_rows() rows) and the prefill kernel (matmul_gemm, any count).
TEST(Q4_0, EachRowIsBitwiseIndependentOfTheOtherRows) {
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    const int out = 100, in = 544;
    for (int rows : {small_rows(), 23}) {
      const auto x = random_floats(static_cast<size_t>(rows) * in, 177 + static_cast<uint32_t>(rows));
      const Q4Weights w = store_q4_0(random_floats(static_cast<size_t>(out) * in, 178), out, in);
      auto run = rows > small_rows() ? matmul_gemm : matmul;
      std::vector<float> all(static_cast<size_t>(rows) * out);
      run(x.data(), rows, w.bytes.data(), DType::Q4_0, out, in, all.data());
      for (int r = 0; r < rows; r += 5) {  // alone, and as the last of a group of three
        std::vector<float> one(static_cast<size_t>(out));
        run(x.data() + static_cast<size_t>(r) * in, 1, w.bytes.data(), DType::Q4_0, out, in, one.data());
        EXPECT_EQ(0, std::memcmp(one.data(), all.data() + static_cast<size_t>(r) * out, one.size() * sizeof(float)))
            << level << " rows " << rows << " row " << r;
        if (r >= 2) {
          std::vector<float> three(static_cast<size_t>(3) * out);
          run(x.data() + static_cast<size_t>(r - 2) * in, 3, w.bytes.data(), DType::Q4_0, out, in, three.data());
          EXPECT_EQ(0, std::memcmp(three.data() + 2 * out, all.data() + static_cast<size_t>(r) * out,
                                   static_cast<size_t>(out) * sizeof(float)))
              << level << " rows " << rows << " row " << r;
        }
      }
    }
  }
}

TEST(Q4_0, RowsThatAreNotWholeBlocksAreRefused) {
  std::vector<float> x(40, 1.0f), y(1);
  std::vector<uint8_t> w(64);
  EXPECT_THROW(matmul(x.data(), 1, w.data(), DType::Q4_0, 1, 40, y.data()), Error);
  EXPECT_THROW(matmul_gemm(x.data(), 1, w.data(), DType::Q4_0, 1, 40, y.data()), Error);
}

}  // namespace
}  // namespace llama31::kernels
