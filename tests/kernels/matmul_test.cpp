// matmul: the scalar twin against float64, every SIMD level against the scalar twin, thread-count
// independence, prefill (many rows) against decode (one row at a time), and bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernel_test_support.h"
#include "kernels/kernels.h"
#include "kernels/scalar.h"
#include "util/error.h"

namespace llama31::kernels {
namespace {

using testing::expect_close;
using testing::KernelSettingsGuard;
using testing::random_floats;
using testing::Shape;
using testing::store_weights;
using testing::StoredWeights;

std::vector<Shape> odd_shapes() {
  std::vector<Shape> shapes;
  for (int rows : {1, 2, 3, 4, 5, 6, 7, 33}) {
    for (int out : {1, 13, 70, 131}) {
      for (int in : {1, 15, 33, 100, 300, 517}) shapes.push_back({rows, out, in});
    }
  }
  return shapes;
}

// sum_i |x_i w_i| for every output element: the scale the rounding error of a dot product grows with.
std::vector<double> magnitudes(const std::vector<float>& x, const StoredWeights& w, Shape s) {
  std::vector<double> result(static_cast<size_t>(s.rows) * s.out);
  for (int r = 0; r < s.rows; ++r) {
    for (int o = 0; o < s.out; ++o) {
      double sum = 0.0;
      for (int i = 0; i < s.in; ++i) {
        sum += std::fabs(static_cast<double>(x[static_cast<size_t>(r) * s.in + i]) * w.values[static_cast<size_t>(o) * s.in + i]);
      }
      result[static_cast<size_t>(r) * s.out + o] = sum;
    }
  }
  return result;
}

std::string describe(const std::string& level, DType type, Shape s) {
  return level + " " + std::string(dtype_name(type)) + " rows=" + std::to_string(s.rows) +
         " out=" + std::to_string(s.out) + " in=" + std::to_string(s.in);
}

TEST(Matmul, ScalarTwinMatchesFloat64) {
  uint32_t seed = 1;
  for (DType type : testing::kAllTypes) {
    for (Shape s : odd_shapes()) {
      const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
      const StoredWeights w = store_weights(random_floats(static_cast<size_t>(s.out) * s.in, seed++), type);
      std::vector<double> expected(static_cast<size_t>(s.rows) * s.out);
      for (int r = 0; r < s.rows; ++r) {
        for (int o = 0; o < s.out; ++o) {
          double sum = 0.0;
          for (int i = 0; i < s.in; ++i) {
            sum += static_cast<double>(x[static_cast<size_t>(r) * s.in + i]) * w.values[static_cast<size_t>(o) * s.in + i];
          }
          expected[static_cast<size_t>(r) * s.out + o] = sum;
        }
      }
      std::vector<float> y(expected.size(), NAN);
      scalar::matmul(x.data(), s.rows, w.data(), type, s.out, s.in, y.data());
      expect_close(y, expected, magnitudes(x, w, s), 1e-5, describe("scalar", type, s));
    }
  }
}

TEST(Matmul, EverySimdLevelMatchesScalarTwin) {
  KernelSettingsGuard guard;
  const auto levels = testing::simd_levels();
  if (levels.empty()) GTEST_SKIP() << "this CPU has no SIMD level";
  for (const std::string& level : levels) {
    set_isa(level);
    ASSERT_EQ(std::string(active_isa()), level);
    uint32_t seed = 1000;
    for (DType type : testing::kAllTypes) {
      for (Shape s : odd_shapes()) {
        const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
        const StoredWeights w = store_weights(random_floats(static_cast<size_t>(s.out) * s.in, seed++), type);
        std::vector<float> reference(static_cast<size_t>(s.rows) * s.out);
        scalar::matmul(x.data(), s.rows, w.data(), type, s.out, s.in, reference.data());
        std::vector<float> y(reference.size(), NAN);
        matmul(x.data(), s.rows, w.data(), type, s.out, s.in, y.data());
        expect_close(y, std::vector<double>(reference.begin(), reference.end()), magnitudes(x, w, s), 1e-5,
                     describe(level, type, s));
      }
    }
  }
}

TEST(Matmul, ResultDoesNotDependOnThreadCount) {
  KernelSettingsGuard guard;
  const Shape shapes[] = {{1, 1100, 517}, {3, 700, 300}, {9, 300, 300}, {33, 200, 257}};
  for (const std::string& level : available_isas()) {
    set_isa(level);
    uint32_t seed = 2000;
    for (DType type : testing::kAllTypes) {
      for (Shape s : shapes) {
        const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
        const StoredWeights w = store_weights(random_floats(static_cast<size_t>(s.out) * s.in, seed++), type);
        std::vector<float> one_thread(static_cast<size_t>(s.rows) * s.out, NAN);
        std::vector<float> two_threads(one_thread.size(), NAN);
        set_num_threads(1);
        matmul(x.data(), s.rows, w.data(), type, s.out, s.in, one_thread.data());
        set_num_threads(2);
        matmul(x.data(), s.rows, w.data(), type, s.out, s.in, two_threads.data());
        EXPECT_EQ(0, std::memcmp(one_thread.data(), two_threads.data(), one_thread.size() * sizeof(float)))
            << describe(level, type, s);
      }
    }
  }
}

TEST(Matmul, ManyRowsAgreeWithOneRowAtATime) {
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    uint32_t seed = 3000;
    for (DType type : testing::kAllTypes) {
      for (Shape s : {Shape{2, 70, 300}, Shape{4, 131, 100}, Shape{9, 131, 517}, Shape{33, 200, 300}}) {
        const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
        const StoredWeights w = store_weights(random_floats(static_cast<size_t>(s.out) * s.in, seed++), type);
        std::vector<float> together(static_cast<size_t>(s.rows) * s.out, NAN);
        matmul(x.data(), s.rows, w.data(), type, s.out, s.in, together.data());
        std::vector<float> one_by_one(together.size(), NAN);
        for (int r = 0; r < s.rows; ++r) {
          matmul(x.data() + static_cast<size_t>(r) * s.in, 1, w.data(), type, s.out, s.in,
                 one_by_one.data() + static_cast<size_t>(r) * s.out);
        }
        expect_close(together, std::vector<double>(one_by_one.begin(), one_by_one.end()), magnitudes(x, w, s),
                     1e-5, describe(level, type, s));
      }
    }
  }
}

// Prompts batched together or cut into chunks must compute exactly what they compute alone: each row of
// matmul_gemm is bitwise the same whatever rows surround it and however many there are; the small-row
// kernel likewise for any count up to small_rows().
TEST(Matmul, EachRowIsBitwiseIndependentOfTheOtherRows) {
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    uint32_t seed = 4000;
    for (DType type : testing::kAllTypes) {
      const Shape s{29, 77, 300};
      const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
      const StoredWeights w = store_weights(random_floats(static_cast<size_t>(s.out) * s.in, seed++), type);
      std::vector<float> all(static_cast<size_t>(s.rows) * s.out, NAN);
      matmul_gemm(x.data(), s.rows, w.data(), type, s.out, s.in, all.data());
      for (int first : {0, 5, 13}) {
        for (int count : {1, 2, 3, 12, 13, 16}) {
          if (first + count > s.rows) continue;
          std::vector<float> part(static_cast<size_t>(count) * s.out, NAN);
          matmul_gemm(x.data() + static_cast<size_t>(first) * s.in, count, w.data(), type, s.out, s.in, part.data());
          EXPECT_EQ(0, std::memcmp(part.data(), all.data() + static_cast<size_t>(first) * s.out,
                                   part.size() * sizeof(float)))
              << describe(level, type, s) << " gemm rows " << first << "+" << count;
        }
      }
      std::vector<float> one(static_cast<size_t>(s.out), NAN);
      for (int count = 1; count <= small_rows(); ++count) {
        std::vector<float> group(static_cast<size_t>(count) * s.out, NAN);
        matmul(x.data(), count, w.data(), type, s.out, s.in, group.data());
        for (int r = 0; r < count; ++r) {
          matmul(x.data() + static_cast<size_t>(r) * s.in, 1, w.data(), type, s.out, s.in, one.data());
          EXPECT_EQ(0, std::memcmp(one.data(), group.data() + static_cast<size_t>(r) * s.out, one.size() * sizeof(float)))
              << describe(level, type, s) << " small rows " << count << " row " << r;
        }
      }
    }
  }
}

TEST(Matmul, EmptyInputDimensionGivesZeros) {
  std::vector<float> y(6, NAN);
  matmul(nullptr, 2, nullptr, DType::BF16, 3, 0, y.data());
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST(Matmul, RejectsBadArguments) {
  std::vector<float> x(8, 1.0f), w(8, 1.0f), y(4);
  EXPECT_THROW(matmul(x.data(), -1, w.data(), DType::F32, 1, 8, y.data()), Error);
  EXPECT_THROW(matmul(x.data(), 1, w.data(), DType::F32, -2, 8, y.data()), Error);
  EXPECT_THROW(matmul(x.data(), 1, w.data(), DType::F32, 1, -8, y.data()), Error);
  EXPECT_THROW(matmul(x.data(), 1, nullptr, DType::F32, 1, 8, y.data()), Error);
  EXPECT_THROW(matmul(nullptr, 1, w.data(), DType::F32, 1, 8, y.data()), Error);
  EXPECT_THROW(matmul(x.data(), 1, w.data(), DType::F32, 1, 8, nullptr), Error);
}

TEST(Dispatch, ListsLevelsBestFirstEndingWithScalar) {
  const auto levels = available_isas();
  ASSERT_FALSE(levels.empty());
  EXPECT_EQ(levels.back(), "scalar");
  const char* forced = std::getenv("LLAMA31_ISA");
  const std::string expected = forced != nullptr && *forced != '\0' ? forced : levels.front();
  EXPECT_EQ(std::string(active_isa()), expected) << "the best level unless LLAMA31_ISA names one";
}

TEST(Dispatch, SetIsaRejectsUnknownNamesAndKeepsTheLevel) {
  KernelSettingsGuard guard;
  const std::string before = active_isa();
  EXPECT_THROW(set_isa("sse9"), Error);
  EXPECT_EQ(std::string(active_isa()), before);
  set_isa("scalar");
  EXPECT_EQ(std::string(active_isa()), "scalar");
}

TEST(Dispatch, ThreadCountMustBePositive) {
  KernelSettingsGuard guard;
  EXPECT_THROW(set_num_threads(0), Error);
  set_num_threads(1);
  EXPECT_EQ(num_threads(), 1);
}

}  // namespace
}  // namespace llama31::kernels
