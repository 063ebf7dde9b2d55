// Test-side writers of the published quantized layouts, written from the layouts' documentation
// (AutoAWQ's WQLinear_GEMM packing, AutoGPTQ's "gptq" checkpoint format, fbgemm_fp8's per-channel
// scales), independently of model_files/quantized_weights.cpp, so tests can check that the loader
// reads each layout element by element. Each takes known integers and scales and also returns the
// dense weights the layout stands for.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "model_files/safetensors.h"

namespace llama31::testing {

struct QuantizedLinear {
  std::vector<TensorToWrite> tensors;  // named module + ".qweight" etc.
  std::vector<float> dense;            // [out][in], the values the layout means (already rounded)
  DType dense_dtype = DType::F16;
};

// Random 4-bit weights (q, zero in 0..15, f16 scales in [scale_lo, scale_hi]) of an [out][in] layer.
QuantizedLinear random_awq_linear(const std::string& module, int out, int in, int group_size, std::mt19937& rng,
                                  float scale_lo = 0.002f, float scale_hi = 0.05f);
// act_order: g_idx maps inputs to groups through a random permutation, as desc_act checkpoints do.
// with_g_idx false writes no g_idx tensor (groups follow input order).
QuantizedLinear random_gptq_linear(const std::string& module, int out, int in, int group_size, bool act_order,
                                   bool with_g_idx, std::mt19937& rng, float scale_lo = 0.002f,
                                   float scale_hi = 0.05f);
// Random e4m3 codes (never NaN) with a per-output-channel scale of dtype scale_dtype, shape [out, 1].
QuantizedLinear random_fp8_linear(const std::string& module, int out, int in, DType scale_dtype, std::mt19937& rng,
                                  float scale_lo = 0.0001f, float scale_hi = 0.0005f);

// A view of bytes held by a TensorToWrite (for calling the dequantizers directly).
TensorView view_of(const TensorToWrite& t);

}  // namespace llama31::testing
