// config.json and generation_config.json of a Hugging Face Llama checkpoint.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model_files/quantization_config.h"

namespace llama31 {

// rope_scaling of type "llama3" (Llama 3.1): frequencies whose wavelength exceeds
// original_max_position_embeddings / low_freq_factor are divided by factor, those shorter than
// original_max_position_embeddings / high_freq_factor are kept, and the band between is blended.
struct RopeScaling {
  std::string rope_type;  // "llama3"
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position_embeddings = 8192;
};

struct LlamaConfig {
  std::string architecture;  // "LlamaForCausalLM"
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;  // GQA: num_attention_heads is a multiple of it
  int head_dim = 0;             // defaults to hidden_size / num_attention_heads
  int vocab_size = 0;
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-5;
  double rope_theta = 500000.0;
  std::optional<RopeScaling> rope_scaling;
  // Per-dimension divisors of the rotary frequencies as a GGUF file stores them (rope_freqs.weight, what
  // llama.cpp applies for llama3 scaling); used instead of rope_scaling when not empty (head_dim / 2 values).
  std::vector<double> rope_frequency_factors;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // must be false: Llama 3.1 has no biases
  bool mlp_bias = false;
  std::optional<int> bos_token_id;
  std::vector<int> eos_token_ids;  // config.json eos_token_id, a number or a list
  std::string torch_dtype;
  std::optional<QuantizationConfig> quantization;  // quantization_config of a quantized checkpoint

  // Parses and validates; errors name `source` (the file) and the field.
  static LlamaConfig from_json(const nlohmann::json& j, const std::string& source);
  static LlamaConfig from_file(const std::filesystem::path& config_json);
  nlohmann::json to_json() const;

  // Total parameters of the checkpoint (embeddings, layers, norms, head if untied).
  long long parameter_count() const;
};

// The per-dimension rotary inverse frequencies exactly as transformers computes them
// (_compute_default_rope_parameters, then _compute_llama3_parameters when rope_scaling is llama3),
// in double precision: head_dim / 2 values.
std::vector<double> rope_inverse_frequencies(const LlamaConfig& config);

struct GenerationConfig {
  std::optional<int> bos_token_id;
  std::vector<int> eos_token_ids;  // eos_token_id, a number or a list
  std::optional<bool> do_sample;
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int> top_k;
  std::optional<double> repetition_penalty;
  std::optional<int> max_new_tokens;

  static GenerationConfig from_json(const nlohmann::json& j, const std::string& source);
  // A missing file gives an empty config (all defaults unset), a malformed one an Error.
  static GenerationConfig from_file_or_empty(const std::filesystem::path& generation_config_json);
};

}  // namespace llama31
