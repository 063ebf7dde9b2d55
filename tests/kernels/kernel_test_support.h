// Shared helpers of the kernel tests: random inputs, weights stored in each dtype, and a guard that
// restores the instruction-set level and thread count a test changed.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
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
