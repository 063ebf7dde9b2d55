// A Hugging Face model folder: config, generation config, weights and tokenizer file paths.
#pragma once

#include <array>
#include <filesystem>
#include <set>
#include <string>

#include "model_files/config.h"
#include "model_files/safetensors.h"

namespace llama31 {

struct ModelFolder {
  std::filesystem::path dir;
  LlamaConfig config;
  GenerationConfig generation;
  TensorStore weights;  // quantized layers (AWQ, GPTQ, FP8) already dequantized to dense weights
  // Linear layers (names without ".weight") whose inputs are quantized per token to FP8 (fbgemm_fp8).
  std::set<std::string> fp8_activation_modules;
  std::filesystem::path tokenizer_json;         // dir/tokenizer.json (must exist)
  std::filesystem::path tokenizer_config_json;  // dir/tokenizer_config.json (may be absent)

  // Validates the architecture (LlamaForCausalLM), the config and that every tensor the Llama
  // architecture needs is present with the right shape and a supported dtype. A quantized checkpoint
  // (config.json quantization_config) has its quantized layers dequantized, with progress on stderr.
  static ModelFolder open(const std::filesystem::path& dir);
};

// The seven linear layers of each decoder layer, as HF names them after "model.layers.N.".
inline constexpr std::array<const char*, 7> kLayerLinearModules = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

// HF tensor names of the Llama architecture.
std::string layer_tensor_name(int layer, const char* suffix);  // "model.layers.3.self_attn.q_proj.weight"

}  // namespace llama31
