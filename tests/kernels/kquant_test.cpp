// K-quant weights (Q4_K, Q5_K, Q6_K, as llama.cpp's reference quantizer writes them) in the kernels: the
// Q8_K activation quantizer against llama.cpp's rules, the vectorized quantizers against it bit for bit,
// convert_to_f32 against the GGUF dequantizer, the scalar twin against float64 of the exactly dequantized
// operands, every SIMD level against the scalar twin on both row paths (rows 1..16 take the decode kernel,
// more the prefill one; output counts that are not multiples of 16 or 64), row independence of both
// kernels, and thread-count independence.
// Tolerance: 1e-5 of sum |x_i w_i| per output. The integer sums per super-block are exact on every path;
// only the fp32 steps after them differ (the products with d * dx and dmin * dx, the conversion of the
// integer sums, the order of the sum over super-blocks), each a relative error of a few 2^-24.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernel_test_support.h"
#include "kernels/kernels.h"
#include "kernels/kquant.h"
#include "kernels/kquant_avx2.h"
#include "kernels/kquant_avx512.h"
#include "kernels/scalar.h"
#include "model_files/ggml_blocks.h"
#include "util/error.h"

namespace llama31::kernels {
namespace {

using testing::describe;
using testing::expect_close;
using testing::float64_products;
using testing::KernelSettingsGuard;
using testing::random_floats;
using testing::Shape;

constexpr DType kTypes[] = {DType::Q4_K, DType::Q5_K, DType::Q6_K};

GgmlType ggml_type_of(DType t) {
  return t == DType::Q4_K ? GgmlType::Q4_K : t == DType::Q5_K ? GgmlType::Q5_K : GgmlType::Q6_K;
}

bool cpu_runs(const std::string& level) {
  const std::vector<std::string> levels = available_isas();
  return std::find(levels.begin(), levels.end(), level) != levels.end();
}

struct KWeights {
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // what each element decodes to
};

// Rows quantized by llama.cpp's reference quantizer (model_files/ggml_blocks), decoded by convert_to_f32.
KWeights store(DType type, const std::vector<float>& source, int out, int in) {
  KWeights w;
  const size_t row = row_bytes(type, in);
  w.bytes.resize(static_cast<size_t>(out) * row);
  w.values.resize(source.size());
  for (int o = 0; o < out; ++o) {
    quantize_ggml_row(ggml_type_of(type), source.data() + static_cast<size_t>(o) * in, in, w.bytes.data() + o * row);
    convert_to_f32(type, w.bytes.data() + o * row, w.values.data() + static_cast<size_t>(o) * in, static_cast<size_t>(in));
  }
  return w;
}

// The x the kernels multiply: each row quantized per super-block of 256, exactly dequantized.
std::vector<float> q8_k_effective_x(const std::vector<float>& x, Shape s) {
  std::vector<float> result(x.size());
  std::vector<int8_t> q(static_cast<size_t>(s.in));
  std::vector<float> scales(static_cast<size_t>(s.in / 256));
  std::vector<int16_t> sums(static_cast<size_t>(s.in / 16));
  for (int r = 0; r < s.rows; ++r) {
    scalar::quantize_activations_q8_k(x.data() + static_cast<size_t>(r) * s.in, s.in, q.data(), scales.data(), sums.data());
    for (int i = 0; i < s.in; ++i) {
      result[static_cast<size_t>(r) * s.in + i] = static_cast<float>(q[static_cast<size_t>(i)]) * scales[static_cast<size_t>(i / 256)];
    }
  }
  return result;
}

std::vector<Shape> kquant_shapes() {
  std::vector<Shape> result;
  for (int rows : {1, 2, 3, 4, 5, 8, 16, 17, 100}) {
    for (int out : {1, 13, 70, 131}) {
      for (int in : {256, 512, 2048}) result.push_back({rows, out, in});
    }
    result.push_back({rows, 37, 8192});
  }
  return result;
}

// Blocks that stress the quantizer: the largest magnitude negative, a tie of +-max (the first wins),
// values landing on .5 after scaling (ties to even), an all-zero block, tiny values, several magnitudes.
std::vector<float> kquant_hard_inputs() {
  std::vector<float> x = random_floats(256 * 8, 21, -3.0f, 3.0f);
  x[5] = -7.0f;
  x[256 + 9] = 4.0f;
  x[256 + 200] = -4.0f;
  for (int i = 0; i < 256; ++i) x[512 + static_cast<size_t>(i)] = static_cast<float>(i % 64) - 31.5f;
  x[512] = -127.0f;  // iscale 1: the others are ties
  std::fill(x.begin() + 768, x.begin() + 1024, 0.0f);
  for (int i = 0; i < 256; ++i) x[1024 + static_cast<size_t>(i)] *= 1e-30f;
  for (int i = 0; i < 256; ++i) x[1280 + static_cast<size_t>(i)] *= 1e4f;
  return x;
}

TEST(KQuant, ActivationsAreQuantizedAsLlamaCppsQ8K) {
  const std::vector<float> x = kquant_hard_inputs();
  const int n = static_cast<int>(x.size());
  std::vector<int8_t> q(x.size());
  std::vector<float> scales(x.size() / 256);
  std::vector<int16_t> sums(x.size() / 16);
  scalar::quantize_activations_q8_k(x.data(), n, q.data(), scales.data(), sums.data());
  EXPECT_EQ(q[5], -127);                  // the negative maximum maps to -127
  EXPECT_EQ(scales[0], 1.0f / (-127.0f / -7.0f));  // 1 / iscale
  EXPECT_EQ(q[256 + 9], -127);            // +4 came first: iscale = -127 / 4
  EXPECT_EQ(q[256 + 200], 127);
  for (int i = 1; i < 256; ++i) {         // iscale -127 / -127 = 1: x - 31.5 rounds half to even
    const float v = static_cast<float>(i % 64) - 31.5f;
    EXPECT_EQ(q[512 + static_cast<size_t>(i)], static_cast<int8_t>(std::nearbyint(v))) << i;
  }
  EXPECT_EQ(scales[3], 0.0f);
  EXPECT_TRUE(std::all_of(q.begin() + 768, q.begin() + 1024, [](int8_t v) { return v == 0; }));
  for (size_t g = 0; g < sums.size(); ++g) {
    int sum = 0;
    for (size_t i = 0; i < 16; ++i) sum += q[16 * g + i];
    EXPECT_EQ(sums[g], sum) << "group " << g;
  }
  for (size_t i = 0; i < x.size(); ++i) {  // |x / scale - q| <= 1/2 (+ rounding of the scale)
    if (scales[i / 256] != 0.0f) {
      EXPECT_LE(std::fabs(x[i] / scales[i / 256] - q[i]), 0.5001f) << i;
    }
  }
}

// The SIMD levels' records hold the scalar quantizer's integers, scales and sums, bit for bit.
TEST(KQuant, VectorizedActivationRecordsEqualTheScalarOnes) {
  const std::vector<float> x = kquant_hard_inputs();
  const int n = static_cast<int>(x.size());
  const size_t floats = kquant_row_floats(n);
  for (DType type : kTypes) {
    for (KquantOrder order : {KquantOrder::Natural, KquantOrder::SubBlockPairs}) {
      std::vector<float> want(floats), got(floats);
      kquant_fill_records(x.data(), n, type, order, reinterpret_cast<KquantActivations*>(want.data()));
      if (cpu_runs("avx512")) {
        avx512::kquant_fill_records_avx512(x.data(), n, type, order == KquantOrder::SubBlockPairs, got.data());
        EXPECT_EQ(0, std::memcmp(want.data(), got.data(), floats * sizeof(float))) << dtype_name(type) << " avx512";
      }
      if (cpu_runs("avx2") && order == KquantOrder::Natural) {
        avx2::kquant_prepare(x.data(), 1, n, type, got.data());
        EXPECT_EQ(0, std::memcmp(want.data(), got.data(), floats * sizeof(float))) << dtype_name(type) << " avx2";
      }
    }
  }
}

TEST(KQuant, ConvertToF32DecodesAsTheGgufDequantizer) {
  for (DType type : kTypes) {
    const int in = 1024;
    const KWeights w = store(type, random_floats(static_cast<size_t>(in), 5, -2.0f, 1.0f), 1, in);
    std::vector<float> want(static_cast<size_t>(in));
    dequantize_ggml_row(ggml_type_of(type), w.bytes.data(), want.data(), in);
    EXPECT_EQ(0, std::memcmp(want.data(), w.values.data(), want.size() * sizeof(float))) << dtype_name(type);
    EXPECT_EQ(row_bytes(type, in), ggml_row_bytes(ggml_type_of(type), in));
    EXPECT_TRUE(is_matmul_dtype(type));
  }
}

TEST(KQuant, ScalarTwinMatchesFloat64OfTheQuantizedOperands) {
  for (DType type : kTypes) {
    uint32_t seed = 11;
    for (Shape s : kquant_shapes()) {
      if (s.rows > 17) continue;  // the scalar twin has one path; larger shapes are covered below
      const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
      const KWeights w = store(type, random_floats(static_cast<size_t>(s.out) * s.in, seed++), s.out, s.in);
      std::vector<double> expected, scale;
      float64_products(q8_k_effective_x(x, s), w.values, s, expected, scale);
      std::vector<float> y(expected.size(), NAN);
      scalar::matmul(x.data(), s.rows, w.bytes.data(), type, s.out, s.in, y.data());
      expect_close(y, expected, scale, 1e-5, describe(std::string("scalar ") + std::string(dtype_name(type)), s));
    }
  }
}

TEST(KQuant, EverySimdLevelMatchesTheScalarTwin) {
  KernelSettingsGuard guard;
  const auto levels = testing::simd_levels();
  if (levels.empty()) GTEST_SKIP() << "this CPU has no SIMD level";
  for (const std::string& level : levels) {
    set_isa(level);
    for (DType type : kTypes) {
      uint32_t seed = 700;
      for (Shape s : kquant_shapes()) {
        const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
        const KWeights w = store(type, random_floats(static_cast<size_t>(s.out) * s.in, seed++), s.out, s.in);
        std::vector<double> expected, scale;
        float64_products(q8_k_effective_x(x, s), w.values, s, expected, scale);
        std::vector<float> twin(scale.size(), NAN), y(scale.size(), NAN), gemm(scale.size(), NAN);
        scalar::matmul(x.data(), s.rows, w.bytes.data(), type, s.out, s.in, twin.data());
        const std::vector<double> twin_values(twin.begin(), twin.end());
        const std::string what = level + " " + std::string(dtype_name(type));
        // matmul: the decode kernel up to small_rows() rows, the prefill kernel above.
        matmul(x.data(), s.rows, w.bytes.data(), type, s.out, s.in, y.data());
        expect_close(y, twin_values, scale, 1e-5, describe(what, s));
        // The prefill kernel, whatever the row count: the same products.
        matmul_gemm(x.data(), s.rows, w.bytes.data(), type, s.out, s.in, gemm.data());
        expect_close(gemm, twin_values, scale, 1e-5, describe(what + " gemm", s));
      }
    }
  }
}

TEST(KQuant, ResultDoesNotDependOnThreadCount) {
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    for (DType type : kTypes) {
      uint32_t seed = 1300;
      for (Shape s : {Shape{1, 1100, 512}, Shape{4, 700, 768}, Shape{16, 300, 256}, Shape{33, 300, 512}}) {
        const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
        const KWeights w = store(type, random_floats(static_cast<size_t>(s.out) * s.in, seed++), s.out, s.in);
        for (bool gemm : {false, true}) {
          std::vector<float> one(static_cast<size_t>(s.rows) * s.out, NAN), two(one.size(), NAN);
          auto run = gemm ? matmul_gemm : matmul;
          set_num_threads(1);
          run(x.data(), s.rows, w.bytes.data(), type, s.out, s.in, one.data());
          set_num_threads(2);
          run(x.data(), s.rows, w.bytes.data(), type, s.out, s.in, two.data());
          EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)))
              << describe(level + " " + std::string(dtype_name(type)) + (gemm ? " gemm" : ""), s);
        }
      }
    }
  }
}

// Each row of y, computed with others or alone, is bitwise the same: the decode kernel (up to
// small_rows() rows) and the prefill kernel (matmul_gemm, any count).
TEST(KQuant, EachRowIsBitwiseIndependentOfTheOtherRows) {
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    for (DType type : kTypes) {
      const int out = 100, in = 768;
      for (int rows : {small_rows(), 23}) {
        const auto x = random_floats(static_cast<size_t>(rows) * in, 177 + static_cast<uint32_t>(rows));
        const KWeights w = store(type, random_floats(static_cast<size_t>(out) * in, 178), out, in);
        auto run = rows > small_rows() ? matmul_gemm : matmul;
        std::vector<float> all(static_cast<size_t>(rows) * out);
        run(x.data(), rows, w.bytes.data(), type, out, in, all.data());
        for (int r = 0; r < rows; r += 5) {  // alone, and as the last of a group of three
          std::vector<float> one(static_cast<size_t>(out));
          run(x.data() + static_cast<size_t>(r) * in, 1, w.bytes.data(), type, out, in, one.data());
          EXPECT_EQ(0, std::memcmp(one.data(), all.data() + static_cast<size_t>(r) * out, one.size() * sizeof(float)))
              << level << " " << dtype_name(type) << " rows " << rows << " row " << r;
          if (r >= 2) {
            std::vector<float> three(static_cast<size_t>(3) * out);
            run(x.data() + static_cast<size_t>(r - 2) * in, 3, w.bytes.data(), type, out, in, three.data());
            EXPECT_EQ(0, std::memcmp(three.data() + 2 * out, all.data() + static_cast<size_t>(r) * out,
                                     static_cast<size_t>(out) * sizeof(float)))
                << level << " " << dtype_name(type) << " rows " << rows << " row " << r;
          }
        }
      }
    }
  }
}

TEST(KQuant, RowsThatAreNotWholeSuperBlocksAreRefused) {
  std::vector<float> x(288, 1.0f), y(1);
  std::vector<uint8_t> w(512);
  for (DType type : kTypes) {
    EXPECT_THROW(matmul(x.data(), 1, w.data(), type, 1, 288, y.data()), Error) << dtype_name(type);
    EXPECT_THROW(matmul_gemm(x.data(), 1, w.data(), type, 1, 288, y.data()), Error) << dtype_name(type);
  }
}

}  // namespace
}  // namespace llama31::kernels
