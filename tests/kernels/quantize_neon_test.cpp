// The NEON activation quantizer of the int8 kernels (AArch64 builds only; elsewhere this file is empty)
// against its scalar twin: the same int8 values and the same scales, bit for bit, so the NEON level
// multiplies the same integers as every other level.
#include <gtest/gtest.h>

#if defined(__aarch64__)

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernel_test_support.h"
#include "kernels/int8_neon.h"
#include "kernels/scalar.h"

namespace llama31::kernels {
namespace {

void expect_scalar_bits(const std::vector<float>& x) {
  const int n = static_cast<int>(x.size());
  std::vector<int8_t> q_scalar(x.size()), q_neon(x.size());
  std::vector<float> d_scalar(x.size() / 32), d_neon(x.size() / 32);
  scalar::quantize_activations_q8(x.data(), n, q_scalar.data(), d_scalar.data());
  neon::quantize_activations_q8(x.data(), n, q_neon.data(), d_neon.data());
  EXPECT_EQ(q_neon, q_scalar);
  EXPECT_EQ(std::memcmp(d_neon.data(), d_scalar.data(), d_neon.size() * sizeof(float)), 0);
}

TEST(QuantizeActivationsQ8, NeonGivesTheScalarBits) {
  // Random spans of several magnitudes, an all-zero block, tiny values, a negative maximum.
  std::vector<float> x = testing::random_floats(32 * 512, 5, -3.0f, 3.0f);
  for (size_t i = 0; i < 32 * 64; ++i) x[i] *= 1e-4f;
  std::fill(x.begin() + 32 * 100, x.begin() + 32 * 101, 0.0f);
  for (size_t i = 0; i < 32; ++i) x[32 * 101 + i] = 1e-30f * static_cast<float>(i + 1);
  x[32 * 102] = -50.0f;
  expect_scalar_bits(x);
}

TEST(QuantizeActivationsQ8, NeonRoundsTiesToEvenAsTheScalarTwin) {
  std::vector<float> x(64);
  for (size_t i = 0; i < 32; ++i) x[i] = static_cast<float>(i) - 15.5f;
  x[0] = 127.0f;  // scale 1: the others scale to -14.5, -13.5, ...: ties
  for (size_t i = 32; i < 64; ++i) x[i] = 0.5f + static_cast<float>(i);
  expect_scalar_bits(x);
  std::vector<int8_t> q(64);
  std::vector<float> d(2);
  neon::quantize_activations_q8(x.data(), 64, q.data(), d.data());
  EXPECT_EQ(q[1], -14);  // -14.5
  EXPECT_EQ(q[2], -14);  // -13.5
}

}  // namespace
}  // namespace llama31::kernels

#endif  // __aarch64__
