// config.json's quantization_config for the quantized Llama 3.1 checkpoints as published:
// AWQ (AutoAWQ GEMM layout, hugging-quants ...-AWQ-INT4), GPTQ (AutoGPTQ layout, hugging-quants
// ...-GPTQ-INT4, with or without act-order) and FP8 (fbgemm_fp8, meta-llama ...-FP8).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace llama31 {

enum class QuantMethod { Awq, Gptq, FbgemmFp8 };

struct QuantizationConfig {
  QuantMethod method = QuantMethod::Awq;
  int bits = 4;            // AWQ, GPTQ: only 4 is supported
  int group_size = 128;    // AWQ, GPTQ: input channels per scale (GPTQ: -1 = one group per row)
  bool zero_point = true;  // AWQ: asymmetric with zero points (the published checkpoints)
  bool desc_act = false;   // GPTQ: act-order (groups follow g_idx)
  bool sym = true;         // GPTQ: symmetric (zero points are all 8)
  std::string version = "gemm";  // AWQ packing; only GEMM is supported
  // FP8: activations are quantized per token with scale min(max|x|, activation_scale_ub) / 448.
  double activation_scale_ub = 1200.0;
  // Linear layers kept unquantized, as module names ("lm_head", "model.layers.0.self_attn.q_proj") or,
  // as Meta's FP8 checkpoints and AutoAWQ write them, name fragments ("self_attn").
  std::vector<std::string> modules_to_not_convert;

  // Parses config.json's "quantization_config"; errors name source and the field.
  static QuantizationConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
  // True when the module (a linear layer name without ".weight") stays unquantized.
  bool keeps_unquantized(const std::string& module) const;
};

std::string_view quant_method_name(QuantMethod method);  // "awq", "gptq", "fbgemm_fp8"

}  // namespace llama31
