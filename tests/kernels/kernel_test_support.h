// Shared helpers of the kernel tests: random inputs, weights stored in each dtype, the float64 reference
// of a matrix product and its tolerance check, and a guard that restores the instruction-set level and
// thread count a test changed.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/scalar.h"
#include "util/dtype.h"

namespace llama31::kernels::testing {

// n values uniform in [low, high); never all zeros.
inline std::vector<float> random_floats(size_t n, uint32_t seed, float low = -1.0f, float high = 1.0f) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(low, high);
  std::vector<float> values(n);
  for (float& v : values) v = distribution(generator);
  return values;
}

// A weight matrix stored in one dtype, with its exact values as float for references.
struct StoredWeights {
  DType type;
  std::vector<uint16_t> half_bits;  // BF16 or F16 storage
  std::vector<float> floats;        // F32 storage
  std::vector<float> values;        // what the stored elements decode to

  const void* data() const {
    return type == DType::F32 ? static_cast<const void*>(floats.data()) : static_cast<const void*>(half_bits.data());
  }
};

inline StoredWeights store_weights(const std::vector<float>& source, DType type) {
  StoredWeights stored{type, {}, {}, {}};
  if (type == DType::F32) {
    stored.floats = source;
    stored.values = source;
    return stored;
  }
  stored.half_bits.resize(source.size());
  stored.values.resize(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    stored.half_bits[i] = type == DType::BF16 ? f32_to_bf16(source[i]) : f32_to_f16(source[i]);
    stored.values[i] = type == DType::BF16 ? bf16_to_f32(stored.half_bits[i]) : f16_to_f32(stored.half_bits[i]);
  }
  return stored;
}

inline const DType kAllTypes[] = {DType::BF16, DType::F16, DType::F32};

// The SIMD levels of this CPU (every available level except scalar).
inline std::vector<std::string> simd_levels() {
  std::vector<std::string> levels;
  for (const std::string& level : available_isas()) {
    if (level != "scalar") levels.push_back(level);
  }
  return levels;
}

// A product's size: x is [rows][in], W [out][in].
struct Shape {
  int rows, out, in;
};

// The x the int8 kernels multiply: each row quantized per block of 32 (Q8_0 activations), as floats.
inline std::vector<float> q8_blocks_effective_x(const std::vector<float>& x, Shape s) {
  std::vector<float> result(x.size());
  std::vector<int8_t> q(static_cast<size_t>(s.in));
  std::vector<float> scales(static_cast<size_t>(s.in / 32));
  for (int r = 0; r < s.rows; ++r) {
    scalar::quantize_activations_q8(x.data() + static_cast<size_t>(r) * s.in, s.in, q.data(), scales.data());
    for (int i = 0; i < s.in; ++i) {
      result[static_cast<size_t>(r) * s.in + i] =
          static_cast<float>(q[static_cast<size_t>(i)]) * scales[static_cast<size_t>(i / 32)];
    }
  }
  return result;
}

inline std::string describe(const std::string& level, Shape s) {
  return level + " rows=" + std::to_string(s.rows) + " out=" + std::to_string(s.out) + " in=" + std::to_string(s.in);
}

// Per output: the float64 sum of x_i * w_i over the exact operands (w_values: what the stored weights
// decode to) and sum |x_i w_i|, the scale the rounding error of a dot product grows with.
inline void float64_products(const std::vector<float>& x, const std::vector<float>& w_values, Shape s,
                             std::vector<double>& expected, std::vector<double>& magnitude) {
  expected.assign(static_cast<size_t>(s.rows) * s.out, 0.0);
  magnitude.assign(expected.size(), 0.0);
  for (int r = 0; r < s.rows; ++r) {
    for (int o = 0; o < s.out; ++o) {
      double sum = 0, total = 0;
      for (int i = 0; i < s.in; ++i) {
        const double term =
            static_cast<double>(x[static_cast<size_t>(r) * s.in + i]) * w_values[static_cast<size_t>(o) * s.in + i];
        sum += term;
        total += std::fabs(term);
      }
      expected[static_cast<size_t>(r) * s.out + o] = sum;
      magnitude[static_cast<size_t>(r) * s.out + o] = total;
    }
  }
}

// |actual - expected| <= relative * magnitude + 1e-6 for every element.
inline void expect_close(const std::vector<float>& actual, const std::vector<double>& expected,
                         const std::vector<double>& magnitude, double relative, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t k = 0; k < actual.size(); ++k) {
    ASSERT_LE(std::fabs(actual[k] - expected[k]), relative * magnitude[k] + 1e-6)
        << what << " element " << k << ": " << actual[k] << " vs " << expected[k];
  }
}

class KernelSettingsGuard {
 public:
  KernelSettingsGuard() : isa_(active_isa()), threads_(num_threads()) {}
  ~KernelSettingsGuard() {
    set_isa(isa_);
    set_num_threads(threads_);
  }
  KernelSettingsGuard(const KernelSettingsGuard&) = delete;
  KernelSettingsGuard& operator=(const KernelSettingsGuard&) = delete;

 private:
  std::string isa_;
  int threads_;
};

}  // namespace llama31::kernels::testing
