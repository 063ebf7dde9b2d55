#include "model_files/model_folder.h"

#include <fmt/format.h>

#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "model_files/gguf_model.h"
#include "model_files/quantized_weights.h"
#include "util/error.h"

namespace llama31 {

namespace {

nlohmann::json read_json_or_empty(const std::filesystem::path& path) {
  if (path.empty() || !std::filesystem::exists(path)) return nlohmann::json::object();
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}", path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("{} is not valid JSON: {}", path.string(), e.what());
  }
}

void check_llama_tensors(const TensorStore& weights, const LlamaConfig& c) {
  const int64_t hidden = c.hidden_size;
  const int64_t q_width = static_cast<int64_t>(c.num_attention_heads) * c.head_dim;
  const int64_t kv_width = static_cast<int64_t>(c.num_key_value_heads) * c.head_dim;
  const int64_t inter = c.intermediate_size;
  const int64_t vocab = c.vocab_size;
  auto get = [&](const std::string& name, const std::vector<int64_t>& shape) {
    const TensorView& t = weights.get(name, shape);
    // FP8 weights run with their per-channel scales, which only a declared FP8 checkpoint's loading keeps,
    // and only for the decoder layers' linear layers (the model scales those products alone).
    const bool unscaled_fp8 =
        t.dtype == DType::F8_E4M3 &&
        (shape.size() != 2 || name.rfind("model.layers.", 0) != 0 ||
         weights.find(name.substr(0, name.size() - std::strlen(".weight")) + kFp8ScaleSuffix) == nullptr);
    if (!is_matmul_dtype(t.dtype) || unscaled_fp8 || (shape.size() == 1 && !is_compute_dtype(t.dtype))) {
      fail("{}: tensor {} has dtype {}; model weights must be BF16, F16 or F32 (or a quantization the "
           "config's quantization_config declares)",
           t.file.string(), name, dtype_name(t.dtype));
    }
  };
  get("model.embed_tokens.weight", {vocab, hidden});
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    get(layer_tensor_name(layer, "input_layernorm.weight"), {hidden});
    get(layer_tensor_name(layer, "self_attn.q_proj.weight"), {q_width, hidden});
    get(layer_tensor_name(layer, "self_attn.k_proj.weight"), {kv_width, hidden});
    get(layer_tensor_name(layer, "self_attn.v_proj.weight"), {kv_width, hidden});
    get(layer_tensor_name(layer, "self_attn.o_proj.weight"), {hidden, q_width});
    get(layer_tensor_name(layer, "post_attention_layernorm.weight"), {hidden});
    get(layer_tensor_name(layer, "mlp.gate_proj.weight"), {inter, hidden});
    get(layer_tensor_name(layer, "mlp.up_proj.weight"), {inter, hidden});
    get(layer_tensor_name(layer, "mlp.down_proj.weight"), {hidden, inter});
  }
  get("model.norm.weight", {hidden});
  if (!c.tie_word_embeddings) get("lm_head.weight", {vocab, hidden});
  // A layer beyond num_hidden_layers means config and weights disagree.
  if (weights.find(layer_tensor_name(c.num_hidden_layers, "input_layernorm.weight")) != nullptr) {
    fail("{}: weights hold more layers than num_hidden_layers ({}) in config.json", weights.dir().string(),
         c.num_hidden_layers);
  }
}

}  // namespace

std::string layer_tensor_name(int layer, const char* suffix) {
  return fmt::format("model.layers.{}.{}", layer, suffix);
}

void ModelFolder::check_tensors() const { check_llama_tensors(weights, config); }

nlohmann::json ModelFolder::tokenizer_document() const {
  if (gguf) return gguf_tokenizer_document(*gguf);
  return read_json_or_empty(tokenizer_json);
}

nlohmann::json ModelFolder::tokenizer_config_document() const {
  if (gguf) return gguf_tokenizer_config_document(*gguf);
  return read_json_or_empty(tokenizer_config_json);
}

nlohmann::json read_tokenizer_config(const std::filesystem::path& model_path) {
  if (is_gguf_file(model_path)) return gguf_tokenizer_config_document(GgufFile(model_path));
  return read_json_or_empty(model_path / "tokenizer_config.json");
}

ModelFolder ModelFolder::open(const std::filesystem::path& dir, QuantizedForm form) {
  if (is_gguf_file(dir)) return open_gguf_model(dir);
  if (!std::filesystem::exists(dir)) fail("model folder {} does not exist", dir.string());
  if (!std::filesystem::is_directory(dir)) {
    fail("{} is not a folder (expected a model folder) nor a GGUF file (it does not start with \"GGUF\")",
         dir.string());
  }
  const std::filesystem::path config_path = dir / "config.json";
  if (!std::filesystem::exists(config_path)) fail("{}: file not found (not a model folder?)", config_path.string());
  ModelFolder folder;
  folder.dir = dir;
  folder.tokenizer_json = dir / "tokenizer.json";
  folder.tokenizer_config_json = dir / "tokenizer_config.json";
  if (!std::filesystem::exists(folder.tokenizer_json)) {
    fail("{}: file not found (the model folder needs its tokenizer)", folder.tokenizer_json.string());
  }
  folder.config = LlamaConfig::from_file(config_path);
  folder.generation = GenerationConfig::from_file_or_empty(dir / "generation_config.json");
  folder.weights = TensorStore::open_folder(dir);
  folder.fp8_activation_modules = dequantize_checkpoint(folder.weights, folder.config, /*show_progress=*/true, form);
  folder.check_tensors();
  return folder;
}

}  // namespace llama31
