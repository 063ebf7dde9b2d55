#include "model_files/quantize_folder.h"

#include <cstring>
#include <optional>

#include <nlohmann/json.hpp>

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

TensorToWrite copy_of(const TensorView& view) {
  TensorToWrite t{view.name, view.dtype, view.shape, {}};
  const auto* bytes = reinterpret_cast<const uint8_t*>(view.data);
  t.data.assign(bytes, bytes + view.nbytes);
  return t;
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
  if (source.is_gguf()) {
    fail("{} is a GGUF file; quantize writes Hugging Face layouts from a Hugging Face folder (run the GGUF file "
         "as it is, or write other GGUF types from the folder with `llama31 convert --type`)",
         source.dir.string());
  }
  if (source.config.quantization) {
    fail("{} is already quantized ({}); quantize an unquantized checkpoint", source.dir.string(),
         quant_method_name(source.config.quantization->method));
  }
  if (std::filesystem::exists(out) && !std::filesystem::is_empty(out)) {
    fail("{} already exists and is not empty; choose a new output folder", out.string());
  }
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
      writer.add(copy_of(view));
    } else {
      const int rows = static_cast<int>(view.shape[0]);
      const int cols = static_cast<int>(view.shape[1]);
      if (type == QuantizeType::Int4G128 && (cols % quant.group_size != 0 || rows % 8 != 0)) {
        fail("{}: tensor {} has shape {}; int4-g128 needs inputs in whole groups of {} and outputs a multiple of 8",
             source.dir.string(), name, view.shape_string(), quant.group_size);
      }
      std::vector<float> w(static_cast<size_t>(view.numel()));
      convert_to_f32(view.dtype, view.data, w.data(), w.size());
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

  LlamaConfig config = source.config;
  config.quantization = quant;
  if (type == QuantizeType::Int4G128) config.torch_dtype = "float16";  // as AutoAWQ writes its checkpoints
  json_fields::write_json_file(out / "config.json", config.to_json());
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                           "special_tokens_map.json"}) {
    if (std::filesystem::exists(source.dir / file)) {
      std::filesystem::copy_file(source.dir / file, out / file, std::filesystem::copy_options::overwrite_existing);
    }
  }
  return report;
}

}  // namespace llama31
