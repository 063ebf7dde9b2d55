// A model to run: a Hugging Face folder (config, generation config, weights and tokenizer files) or a
// llama.cpp GGUF file, whose metadata, tokenizer and tensors are translated to the same form.
#pragma once

#include <array>
#include <filesystem>
#include <memory>
#include <set>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "model_files/config.h"
#include "model_files/safetensors.h"

namespace llama31 {

class GgufFile;

// How a quantized checkpoint's layers are held once loaded: Runtime, in the forms the kernels run (int4 as
// Q4_0 plus offsets, see quantized_weights.h); Dense, as plain f16/bf16 matrices (what convert and quantize
// read and rewrite).
enum class QuantizedForm { Runtime, Dense };

struct ModelFolder {
  std::filesystem::path dir;  // the folder, or the .gguf file
  LlamaConfig config;
  GenerationConfig generation;
  TensorStore weights;  // quantized layers (AWQ, GPTQ, FP8) already in the QuantizedForm asked for
  // Linear layers (names without ".weight") whose inputs are quantized per token to FP8 (fbgemm_fp8).
  std::set<std::string> fp8_activation_modules;
  std::filesystem::path tokenizer_json;         // dir/tokenizer.json (must exist)
  std::filesystem::path tokenizer_config_json;  // dir/tokenizer_config.json (may be absent)
  // The parsed GGUF file when the model came from one (tokenizer_json is then empty).
  std::shared_ptr<const GgufFile> gguf;

  // tokenizer.json's content: read from the folder, or translated from the GGUF file's tokenizer.ggml.*.
  nlohmann::json tokenizer_document() const;
  // tokenizer_config.json's content ({} when absent); for GGUF, bos_token, eos_token and chat_template.
  nlohmann::json tokenizer_config_document() const;
  bool is_gguf() const { return gguf != nullptr; }

  // Validates the architecture (LlamaForCausalLM), the config and that every tensor the Llama
  // architecture needs is present with the right shape and a supported dtype. A quantized checkpoint
  // (config.json quantization_config) has its quantized layers dequantized, with progress on stderr.
  // A path to a GGUF file opens that instead (see gguf_model.h).
  static ModelFolder open(const std::filesystem::path& dir, QuantizedForm form = QuantizedForm::Runtime);
  // Checks that every tensor the Llama architecture needs is present with the right shape and dtype.
  void check_tensors() const;
};

// The seven linear layers of each decoder layer, as HF names them after "model.layers.N.".
inline constexpr std::array<const char*, 7> kLayerLinearModules = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

// tokenizer_config.json's content for a model folder or GGUF file without loading its weights ({} when
// the folder has none).
nlohmann::json read_tokenizer_config(const std::filesystem::path& model_path);

// HF tensor names of the Llama architecture.
std::string layer_tensor_name(int layer, const char* suffix);  // "model.layers.3.self_attn.q_proj.weight"

}  // namespace llama31
