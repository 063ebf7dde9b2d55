#include "model_files/quantize_folder.h"

#include <cstring>
#include <optional>

#include <nlohmann/json.hpp>

#include "model_files/gguf_reader.h"
#include "model_files/gguf_writer.h"
#include "model_files/json_fields.h"
#include "model_files/quantized_weights.h"
#include "util/error.h"
#include "util/progress.h"

namespace llama31 {
namespace {

template <typename T>
TensorToWrite tensor_of(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
  TensorToWrite t{name, dtype, std::move(shape), {}};
  t.data.resize(values.size() * sizeof(T));
  std::memcpy(t.data.data(), values.data(), t.data.size());
  return t;
}

// Every value of a tensor as float, row by row (a Q8_0 / Q4_0 row keeps its scales ahead of its values).
std::vector<float> values_of(const TensorView& view) {
  const int64_t n = view.shape.back();
  const size_t rows = static_cast<size_t>(view.numel() / n);
  const size_t stride = row_bytes(view.dtype, n);
  std::vector<float> values(static_cast<size_t>(view.numel()));
  const auto* src = reinterpret_cast<const std::byte*>(view.data);
  for (size_t r = 0; r < rows; ++r) {
    convert_to_f32(view.dtype, src + r * stride, values.data() + r * static_cast<size_t>(n), static_cast<size_t>(n));
  }
  return values;
}

// A tensor kept as it is: float types as stored; a GGUF file's block types (which safetensors has no
// dtype for) widened to `dense`.
TensorToWrite copy_of(const TensorView& view, DType dense) {
  if (!is_compute_dtype(view.dtype)) {
    const std::vector<float> values = values_of(view);
    TensorToWrite t{view.name, dense, view.shape, std::vector<uint8_t>(values.size() * dtype_size(dense))};
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t h = dense == DType::F16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
      std::memcpy(t.data.data() + i * 2, &h, 2);
    }
    return t;
  }
  TensorToWrite t{view.name, view.dtype, view.shape, {}};
  const auto* bytes = reinterpret_cast<const uint8_t*>(view.data);
  t.data.assign(bytes, bytes + view.nbytes);
  return t;
}

// tokenizer.json for a GGUF file's vocabulary: the document llama31 reads, completed with the fields a
// Hugging Face tokenizers file has (Llama 3's ByteLevel decoder, BOS prepended when the file adds it).
nlohmann::json hf_tokenizer_json(const ModelFolder& source) {
  nlohmann::json doc = source.tokenizer_document();
  const nlohmann::json config = source.tokenizer_config_document();
  nlohmann::json tokenizer = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}};
  for (nlohmann::json& added : doc["added_tokens"]) {
    for (const char* key : {"single_word", "lstrip", "rstrip", "normalized"}) added[key] = false;
  }
  tokenizer["added_tokens"] = doc["added_tokens"];
  tokenizer["normalizer"] = nullptr;
  tokenizer["pre_tokenizer"] = doc["pre_tokenizer"];
  const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false},
                                     {"use_regex", true}};
  const bool add_bos = source.gguf->find_bool("tokenizer.ggml.add_bos_token").value_or(true);
  if (config.contains("bos_token") && add_bos) {
    const std::string bos = config["bos_token"].get<std::string>();
    const auto bos_id = source.gguf->get_uint("tokenizer.ggml.bos_token_id");
    auto special = [&bos](int type_id) {
      return nlohmann::json{{"SpecialToken", {{"id", bos}, {"type_id", type_id}}}};
    };
    auto sequence = [](const char* id, int type_id) {
      return nlohmann::json{{"Sequence", {{"id", id}, {"type_id", type_id}}}};
    };
    nlohmann::json bos_entry = {{"id", bos}};
    bos_entry["ids"] = nlohmann::json::array({bos_id});
    bos_entry["tokens"] = nlohmann::json::array({bos});
    nlohmann::json prepend_bos = {{"type", "TemplateProcessing"}};
    prepend_bos["single"] = nlohmann::json::array({special(0), sequence("A", 0)});
    prepend_bos["pair"] = nlohmann::json::array({special(0), sequence("A", 0), special(1), sequence("B", 1)});
    prepend_bos["special_tokens"] = {{bos, bos_entry}};
    tokenizer["post_processor"] = {{"type", "Sequence"}, {"processors", nlohmann::json::array({byte_level, prepend_bos})}};
  } else {
    tokenizer["post_processor"] = byte_level;
  }
  tokenizer["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  nlohmann::json model = {{"type", "BPE"},        {"dropout", nullptr},         {"unk_token", nullptr},
                          {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                          {"fuse_unk", false},     {"byte_fallback", false}};
  for (auto& [key, value] : doc["model"].items()) model[key] = value;
  tokenizer["model"] = std::move(model);
  return tokenizer;
}

// "model.layers.3.mlp.up_proj" for "model.layers.3.mlp.up_proj.weight" when it is a layer's linear.
std::optional<std::string> linear_module(const std::string& name) {
  if (name.rfind("model.layers.", 0) != 0) return std::nullopt;
  for (const char* module : kLayerLinearModules) {
    const std::string suffix = std::string(".") + module + ".weight";
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return name.substr(0, name.size() - std::strlen(".weight"));
    }
  }
  return std::nullopt;
}

}  // namespace

QuantizeType quantize_type_from_option(std::string_view name, std::string_view option) {
  if (name == "int4-g128" || name == "awq") return QuantizeType::Int4G128;
  if (name == "fp8") return QuantizeType::Fp8;
  fail("{} {}: unknown quantization type (supported: int4-g128, fp8, and as GGUF q8_0, q4_0, q4_k_m)", option, name);
}

std::string_view quantize_type_name(QuantizeType type) {
  return type == QuantizeType::Int4G128 ? "int4-g128" : "fp8";
}

QuantizeReport quantize_folder(const ModelFolder& source, const std::filesystem::path& out, QuantizeType type,
                               bool show_progress) {
  if (source.config.quantization) {
    fail("{} is already quantized ({}); quantize an unquantized checkpoint", source.dir.string(),
         quant_method_name(source.config.quantization->method));
  }
  if (std::filesystem::exists(out) && !std::filesystem::is_empty(out)) {
    fail("{} already exists and is not empty; choose a new output folder", out.string());
  }
  // A GGUF file's config states llama3 rope scaling as rope_freqs factors: config.json needs rope_scaling.
  LlamaConfig config = source.config;
  config.rope_scaling = llama3_rope_scaling_for_factors(config, source.dir.string());
  config.rope_frequency_factors.clear();
  std::filesystem::create_directories(out);

  QuantizationConfig quant;
  quant.method = type == QuantizeType::Int4G128 ? QuantMethod::Awq : QuantMethod::FbgemmFp8;
  quant.bits = type == QuantizeType::Int4G128 ? 4 : 8;
  if (type == QuantizeType::Fp8) {  // as Meta's FP8 checkpoints: attention and the head stay as they are
    for (int layer = 0; layer < source.config.num_hidden_layers; ++layer) {
      for (const char* proj : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
        quant.modules_to_not_convert.push_back(layer_tensor_name(layer, "self_attn.") + proj);
      }
    }
    quant.modules_to_not_convert.push_back("lm_head");
  }

  const std::vector<std::string> names = source.weights.names();
  std::optional<Progress> progress;
  if (show_progress) {
    progress.emplace(fmt::format("quantizing to {}", quantize_type_name(type)), names.size(), "tensors");
  }
  SafetensorsFolderWriter writer(out);
  QuantizeReport report;
  size_t done = 0;
  for (const std::string& name : names) {
    const TensorView& view = source.weights.get(name);
    const std::optional<std::string> module = linear_module(name);
    if (!module || quant.keeps_unquantized(*module)) {
      // As the checkpoints of each layout: AWQ's in f16, Meta's FP8 in bf16.
      writer.add(copy_of(view, type == QuantizeType::Int4G128 ? DType::F16 : DType::BF16));
    } else {
      const int rows = static_cast<int>(view.shape[0]);
      const int cols = static_cast<int>(view.shape[1]);
      if (type == QuantizeType::Int4G128 && (cols % quant.group_size != 0 || rows % 8 != 0)) {
        fail("{}: tensor {} has shape {}; int4-g128 needs inputs in whole groups of {} and outputs a multiple of 8",
             source.dir.string(), name, view.shape_string(), quant.group_size);
      }
      const std::vector<float> w = values_of(view);
      if (type == QuantizeType::Int4G128) {
        const PackedInt4 p = quantize_awq(w, rows, cols, quant.group_size);
        writer.add(tensor_of(*module + ".qweight", DType::I32, {cols, rows / 8}, p.qweight));
        writer.add(tensor_of(*module + ".qzeros", DType::I32, {cols / quant.group_size, rows / 8}, p.qzeros));
        writer.add(tensor_of(*module + ".scales", DType::F16, {cols / quant.group_size, rows}, p.scales));
      } else {
        const Fp8Weight f = quantize_fp8(w, rows, cols);
        writer.add(tensor_of(name, DType::F8_E4M3, {rows, cols}, f.weight));
        writer.add(tensor_of(*module + ".weight_scale", DType::F32, {rows, 1}, f.scale));
        const std::vector<float> ub = {static_cast<float>(quant.activation_scale_ub)};
        writer.add(tensor_of(*module + ".input_scale_ub", DType::F32, {1}, ub));
      }
      ++report.layers_quantized;
    }
    if (progress) progress->update(++done);
  }
  report.bytes_written = writer.finish();
  if (progress) progress->finish();

  config.quantization = quant;
  if (type == QuantizeType::Int4G128) config.torch_dtype = "float16";  // as AutoAWQ writes its checkpoints
  else if (source.is_gguf()) config.torch_dtype = "bfloat16";         // torch has no "gguf"
  json_fields::write_json_file(out / "config.json", config.to_json());
  if (source.is_gguf()) {  // the tokenizer files the file's tokenizer.ggml.* and chat template stand for
    json_fields::write_json_file(out / "tokenizer.json", hf_tokenizer_json(source));
    nlohmann::json tokenizer_config = source.tokenizer_config_document();
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast";
    tokenizer_config["model_input_names"] = {"input_ids", "attention_mask"};
    tokenizer_config["model_max_length"] = config.max_position_embeddings;
    json_fields::write_json_file(out / "tokenizer_config.json", tokenizer_config);
    return report;
  }
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                           "special_tokens_map.json"}) {
    if (std::filesystem::exists(source.dir / file)) {
      std::filesystem::copy_file(source.dir / file, out / file, std::filesystem::copy_options::overwrite_existing);
    }
  }
  return report;
}

}  // namespace llama31
