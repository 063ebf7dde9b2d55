// The vectorized activation quantizer of the int8 kernels against its scalar twin: the same int8 values
// and the same scales, bit for bit, so every level multiplies the same integers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernel_test_support.h"
#include "kernels/scalar.h"

#if defined(__x86_64__)  // the AVX-512 quantizer exists only on x86-64 (the NEON one has its own test)
#include "kernels/quantize_avx512.h"

namespace llama31::kernels {
namespace {

bool cpu_runs_avx512() {
  const std::vector<std::string> levels = available_isas();
  return std::find(levels.begin(), levels.end(), "avx512") != levels.end();
}

// Blocks that stress the rounding: random spans of several magnitudes, values that land exactly on
// .5 after scaling (ties to even), a block whose maximum is negative, an all-zero block, tiny values.
std::vector<float> q8_hard_inputs() {
  std::vector<float> x = testing::random_floats(32 * 64, 7, -3.0f, 3.0f);
  for (int i = 0; i < 32 * 8; ++i) x[static_cast<size_t>(i)] *= 1e-4f;
  for (int i = 0; i < 32; ++i) x[32 * 10 + static_cast<size_t>(i)] = static_cast<float>(i) - 15.5f;
  x[32 * 10] = 127.0f;  // scale 1, so the others scale to -14.5, -13.5, ...: ties
  x[32 * 11] = -50.0f;
  std::fill(x.begin() + 32 * 12, x.begin() + 32 * 13, 0.0f);
  for (int i = 0; i < 32; ++i) x[32 * 13 + static_cast<size_t>(i)] = 1e-30f * static_cast<float>(i + 1);
  return x;
}

TEST(QuantizeActivationsQ8, Avx512GivesTheScalarBits) {
  if (!cpu_runs_avx512()) GTEST_SKIP() << "this CPU has no AVX-512";
  const std::vector<float> x = q8_hard_inputs();
  const int n = static_cast<int>(x.size());
  std::vector<int8_t> q_scalar(x.size()), q_simd(x.size());
  std::vector<float> d_scalar(x.size() / 32), d_simd(x.size() / 32);
  std::vector<int32_t> sums(x.size() / 32);
  scalar::quantize_activations_q8(x.data(), n, q_scalar.data(), d_scalar.data());
  avx512::quantize_activations_q8(x.data(), n, q_simd.data(), d_simd.data(), sums.data());
  EXPECT_EQ(q_simd, q_scalar);
  ASSERT_EQ(std::memcmp(d_simd.data(), d_scalar.data(), d_simd.size() * sizeof(float)), 0);
  for (size_t b = 0; b < sums.size(); ++b) {
    int32_t expected = 0;
    for (size_t i = 0; i < 32; ++i) expected += q_scalar[b * 32 + i];
    EXPECT_EQ(sums[b], expected) << "block " << b;
  }
  // The tie block really holds ties, rounded to even as the scalar version does.
  EXPECT_EQ(q_scalar[32 * 10 + 1], -14);  // -14.5
  EXPECT_EQ(q_scalar[32 * 10 + 2], -14);  // -13.5
}

TEST(QuantizeActivationsQ8, Avx512WithoutSumsLeavesThemAlone) {
  if (!cpu_runs_avx512()) GTEST_SKIP() << "this CPU has no AVX-512";
  const std::vector<float> x = testing::random_floats(256, 11);
  std::vector<int8_t> q_scalar(256), q_simd(256);
  std::vector<float> d_scalar(8), d_simd(8);
  scalar::quantize_activations_q8(x.data(), 256, q_scalar.data(), d_scalar.data());
  avx512::quantize_activations_q8(x.data(), 256, q_simd.data(), d_simd.data(), nullptr);
  EXPECT_EQ(q_simd, q_scalar);
  EXPECT_EQ(d_simd, d_scalar);
}

}  // namespace
}  // namespace llama31::kernels
#endif  // __x86_64__
