// llama31 info: what a model folder holds (architecture, sizes, rope scaling, parameters, bytes).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "model_files/gguf_reader.h"
#include "model_files/model_folder.h"
#include "model_files/quantized_weights.h"

namespace llama31::cli {

namespace {

struct InfoOptions {
  std::string model_dir;
  bool json = false;
};

// Bytes of the fp32 KV cache for one token: keys and values, every layer, every KV head.
long long kv_cache_bytes_per_token(const LlamaConfig& c) {
  return 2LL * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * static_cast<long long>(sizeof(float));
}

std::string with_thousands(long long value) {
  const std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out = value < 0 ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string join_ids(const std::vector<int>& ids) {
  std::string out;
  for (const int id : ids) out += (out.empty() ? "" : ", ") + std::to_string(id);
  return out.empty() ? "none" : out;
}

// How many tensors of each ggml type the file holds ("q4_K": 113, ...).
std::map<std::string, int> gguf_type_counts(const GgufFile& file) {
  std::map<std::string, int> types;
  for (const GgufTensorInfo& t : file.tensors()) ++types[std::string(ggml_type_name(t.type))];
  return types;
}

nlohmann::json info_json(const ModelFolder& folder, long long tensor_parameters,
                         const std::map<std::string, long long>& bytes_by_dtype) {
  const LlamaConfig& c = folder.config;
  nlohmann::json j;
  j["model_dir"] = folder.dir.string();
  j["architecture"] = c.architecture;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = c.to_json()["rope_scaling"];
  if (!c.rope_frequency_factors.empty()) j["rope_frequency_factors"] = c.rope_frequency_factors;
  if (folder.gguf) {
    j["gguf_tensor_types"] = gguf_type_counts(*folder.gguf);
    j["gguf_version"] = folder.gguf->version();
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["bos_token_id"] = c.bos_token_id ? nlohmann::json(*c.bos_token_id) : nlohmann::json(nullptr);
  j["eos_token_ids"] = c.eos_token_ids;
  j["parameter_count"] = c.parameter_count();
  j["tensor_parameter_count"] = tensor_parameters;
  j["parameter_counts_match"] = tensor_parameters == c.parameter_count();
  j["quantization_config"] = c.quantization ? c.quantization->to_json() : nlohmann::json(nullptr);
  j["weight_bytes_by_dtype"] = bytes_by_dtype;
  j["weight_bytes"] = folder.weights.total_bytes();
  j["kv_cache_bytes_per_token"] = kv_cache_bytes_per_token(c);
  j["tensor_count"] = folder.weights.names().size();
  return j;
}

// Whether the int4 layers were loaded as Q4_0 rows with offsets (int4_as_q4_0), not as dense f16.
bool runs_as_q4_0(const ModelFolder& folder) {
  const std::vector<std::string> names = folder.weights.names();
  return std::any_of(names.begin(), names.end(), [](const std::string& name) { return name.ends_with(kInt4OffsetsSuffix); });
}

void print_text(const ModelFolder& folder, long long tensor_parameters,
                const std::map<std::string, long long>& bytes_by_dtype) {
  const LlamaConfig& c = folder.config;
  const auto line = [](const char* label, const std::string& value) {
    std::printf("%-22s %s\n", label, value.c_str());
  };
  line("model folder:", folder.dir.string());
  line("architecture:", c.architecture);
  line("layers:", std::to_string(c.num_hidden_layers));
  line("attention heads:", std::to_string(c.num_attention_heads));
  line("kv heads:", fmt::format("{} ({} query heads per kv head)", c.num_key_value_heads,
                                c.num_attention_heads / c.num_key_value_heads));
  line("head dim:", std::to_string(c.head_dim));
  line("hidden size:", std::to_string(c.hidden_size));
  line("intermediate size:", std::to_string(c.intermediate_size));
  line("vocab size:", std::to_string(c.vocab_size));
  line("context length:", std::to_string(c.max_position_embeddings));
  line("rope theta:", fmt::format("{}", c.rope_theta));
  if (!c.rope_frequency_factors.empty()) {
    const auto [low, high] = std::minmax_element(c.rope_frequency_factors.begin(), c.rope_frequency_factors.end());
    line("rope scaling:", fmt::format("per-dimension factors from the GGUF file's rope_freqs ({} to {})", *low, *high));
  } else if (c.rope_scaling) {
    const RopeScaling& s = *c.rope_scaling;
    line("rope scaling:", fmt::format("{} (factor {}, low_freq_factor {}, high_freq_factor {}, "
                                      "original_max_position_embeddings {})",
                                      s.rope_type, s.factor, s.low_freq_factor, s.high_freq_factor,
                                      s.original_max_position_embeddings));
  } else {
    line("rope scaling:", "none");
  }
  line("tied embeddings:", c.tie_word_embeddings ? "yes" : "no");
  line("bos / eos:", fmt::format("{} / {}", c.bos_token_id ? std::to_string(*c.bos_token_id) : "none",
                                 join_ids(c.eos_token_ids)));
  std::string params = with_thousands(c.parameter_count());
  if (tensor_parameters == c.parameter_count()) {
    params += " (tensors agree)";
  } else {
    params += fmt::format(" (tensors hold {}: extra tensors present)", with_thousands(tensor_parameters));
  }
  line("parameters:", params);
  if (c.quantization) {
    const QuantizationConfig& q = *c.quantization;
    const std::string kept = q.modules_to_not_convert.empty()
                                 ? std::string()
                                 : fmt::format(", {} modules kept unquantized", q.modules_to_not_convert.size());
    line("quantization:", q.method == QuantMethod::FbgemmFp8
                              ? fmt::format("fbgemm_fp8 (e4m3 weights, per-token activations up to {}{}; run as e4m3 "
                                            "with a scale per output channel)",
                                            q.activation_scale_ub, kept)
                              : fmt::format("{} ({}-bit, group {}{}{}; run as {})", quant_method_name(q.method), q.bits,
                                            q.group_size, q.method == QuantMethod::Gptq && q.desc_act ? ", act-order" : "",
                                            kept, runs_as_q4_0(folder) ? "Q4_0 plus zero-point offsets" : "f16"));
  }
  if (folder.gguf) {
    std::string list;
    for (const auto& [type, count] : gguf_type_counts(*folder.gguf)) list += fmt::format("{}{} {}", list.empty() ? "" : ", ", count, type);
    line("GGUF tensors:", fmt::format("version {}: {} (run as the types below)", folder.gguf->version(), list));
  }
  for (const auto& [dtype, bytes] : bytes_by_dtype) {
    line("weight bytes:", fmt::format("{} {} ({:.1f} MiB)", dtype, with_thousands(bytes),
                                      static_cast<double>(bytes) / (1024.0 * 1024.0)));
  }
  line("kv cache per token:", fmt::format("{} bytes (fp32 keys and values)",
                                          with_thousands(kv_cache_bytes_per_token(c))));
}

void run_info(const InfoOptions& options) {
  ModelOptions model_options;
  model_options.model_dir = options.model_dir;
  const ModelFolder folder = ModelFolder::open(resolve_model_dir(model_options));
  long long tensor_parameters = 0;
  std::map<std::string, long long> bytes_by_dtype;
  for (const std::string& name : folder.weights.names()) {
    const TensorView& view = folder.weights.get(name);
    // An FP8 layer's per-channel scales and an int4 layer's offsets and input order are part of its weight,
    // not parameters of their own.
    const bool fp8_scale = name.ends_with(kFp8ScaleSuffix) &&
                           folder.fp8_activation_modules.count(name.substr(0, name.size() - std::strlen(kFp8ScaleSuffix))) != 0;
    const bool int4_side = name.ends_with(kInt4OffsetsSuffix) || name.ends_with(kInt4InputOrderSuffix);
    if (!fp8_scale && !int4_side) tensor_parameters += view.numel();
    bytes_by_dtype[std::string(dtype_name(view.dtype))] += static_cast<long long>(view.nbytes);
  }
  if (options.json) {
    std::printf("%s\n", info_json(folder, tensor_parameters, bytes_by_dtype).dump(2).c_str());
  } else {
    print_text(folder, tensor_parameters, bytes_by_dtype);
  }
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto options = std::make_shared<InfoOptions>();
  CLI::App* sub = app.add_subcommand("info", "Describe a model folder or GGUF file: sizes, rope scaling, quantization, parameters, memory");
  sub->add_option("-m,--model", options->model_dir, "Hugging Face model folder (default: the built-in demo model)");
  sub->add_flag("--json", options->json, "Print machine-readable JSON");
  sub->callback([options] { run_info(*options); });
}

}  // namespace llama31::cli
