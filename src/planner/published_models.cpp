// The three published Llama 3.1 sizes (their config.json values) and the release's memory tables.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <string>

#include "model_files/safetensors.h"
#include "planner/memory_planner.h"
#include "util/error.h"

namespace llama31::planner {

namespace {

LlamaConfig llama31_base_config() {
  LlamaConfig config;
  config.architecture = "LlamaForCausalLM";
  config.num_key_value_heads = 8;
  config.head_dim = 128;
  config.vocab_size = 128256;
  config.max_position_embeddings = 131072;
  config.rms_norm_eps = 1e-5;
  config.rope_theta = 500000.0;
  config.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 8192};
  config.tie_word_embeddings = false;
  config.bos_token_id = 128000;
  config.eos_token_ids = {128001, 128008, 128009};
  config.torch_dtype = "bfloat16";
  return config;
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool holds_weights(const std::filesystem::path& dir) {
  return std::filesystem::exists(dir / "model.safetensors") ||
         std::filesystem::exists(dir / "model.safetensors.index.json");
}

}  // namespace

LlamaConfig published_config(PublishedSize size) {
  LlamaConfig config = llama31_base_config();
  switch (size) {
    case PublishedSize::B8:
      config.hidden_size = 4096;
      config.intermediate_size = 14336;
      config.num_hidden_layers = 32;
      config.num_attention_heads = 32;
      break;
    case PublishedSize::B70:
      config.hidden_size = 8192;
      config.intermediate_size = 28672;
      config.num_hidden_layers = 80;
      config.num_attention_heads = 64;
      break;
    case PublishedSize::B405:
      config.hidden_size = 16384;
      config.intermediate_size = 53248;
      config.num_hidden_layers = 126;
      config.num_attention_heads = 128;
      break;
  }
  return config;
}

ReleaseFigures release_figures(PublishedSize size) {
  switch (size) {
    case PublishedSize::B8:
      return {8, 16, 8, 4, {0.125, 1.95, 15.62}, 60, 16, 6};
    case PublishedSize::B70:
      return {70, 140, 70, 35, {0.313, 4.88, 39.06}, 500, 160, 48};
    case PublishedSize::B405:
      return {405, 810, 405, 203, {0.984, 15.38, 123.05}, 3250, 950, 250};
  }
  return {};
}

bool release_kv_agrees(double release_gib, double exact_gib) {
  // The release prints 3 significant decimals below 1 and 2 above: allow half a unit of the last.
  const double half_unit = release_gib < 1.0 ? 0.0005 : 0.005;
  return std::abs(release_gib - exact_gib) <= half_unit + 1e-9;
}

std::string_view published_name(PublishedSize size) {
  switch (size) {
    case PublishedSize::B8: return "Llama 3.1 8B";
    case PublishedSize::B70: return "Llama 3.1 70B";
    case PublishedSize::B405: return "Llama 3.1 405B";
  }
  return "?";
}

ModelChoice resolve_model(std::string_view model_argument) {
  const std::string name = lower(model_argument);
  for (PublishedSize size : {PublishedSize::B8, PublishedSize::B70, PublishedSize::B405}) {
    const std::string_view full = published_name(size);
    const std::string short_name = lower(full.substr(full.rfind(' ') + 1));  // "8b"
    if (name == short_name) {
      return ModelChoice{std::string(full), published_config(size), size, std::nullopt};
    }
  }
  if (model_argument.empty()) fail("--model is empty: expected 8b, 70b, 405b or a model folder");
  const std::filesystem::path path{std::string(model_argument)};
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    const auto config_json = path / "config.json";
    if (!std::filesystem::exists(config_json)) {
      fail("--model {}: the folder holds no config.json", path.string());
    }
    ModelChoice choice{path.string(), LlamaConfig::from_file(config_json), std::nullopt,
                       std::nullopt};
    if (holds_weights(path)) choice.stored_weight_bytes = TensorStore::open_folder(path).total_bytes();
    return choice;
  }
  if (std::filesystem::is_regular_file(path, ec) && path.extension() == ".json") {
    return ModelChoice{path.string(), LlamaConfig::from_file(path), std::nullopt, std::nullopt};
  }
  fail("--model '{}' is neither a published Llama 3.1 size (8b, 70b, 405b) nor a folder holding "
       "config.json",
       model_argument);
}

}  // namespace llama31::planner
