#include "model_files/config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <numbers>
#include <sstream>

#include <nlohmann/json.hpp>

#include "model_files/json_fields.h"
#include "util/error.h"

namespace llama31 {

namespace {

constexpr const char* kLlamaArchitecture = "LlamaForCausalLM";

// An int field that must be present and positive.
int required_positive_int(const nlohmann::json& j, const char* key, const std::string& source) {
  const std::optional<int> value = json_fields::optional_int(j, key, source);
  if (!value) fail("{}: missing field {}", source, key);
  if (*value <= 0) fail("{}: {} ({}) must be positive", source, key, *value);
  return *value;
}

double positive_double_or(const nlohmann::json& j, const char* key, const std::string& source,
                          double fallback) {
  const double value = json_fields::optional_double(j, key, source).value_or(fallback);
  if (!(value > 0.0) || !std::isfinite(value)) fail("{}: {} ({}) must be positive", source, key, value);
  return value;
}

std::optional<RopeScaling> parse_rope_scaling(const nlohmann::json& j, const std::string& source) {
  const auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) fail("{}: rope_scaling must be an object or null", source);
  const nlohmann::json& rs = *it;
  // transformers >= 4.43 writes "rope_type"; older files say "type".
  std::optional<std::string> type = json_fields::optional_string(rs, "rope_type", source + ": rope_scaling");
  if (!type) type = json_fields::optional_string(rs, "type", source + ": rope_scaling");
  if (!type) fail("{}: rope_scaling has no rope_type (or type)", source);
  if (*type == "default") return std::nullopt;  // transformers' name for "no scaling"
  if (*type != "llama3") {
    fail("{}: rope_scaling type '{}' is not supported (only 'llama3', as Llama 3.1 uses)", source, *type);
  }
  const std::string where = source + ": rope_scaling";
  RopeScaling scaling;
  scaling.rope_type = *type;
  const auto factor = json_fields::optional_double(rs, "factor", where);
  if (!factor) fail("{}: rope_scaling.factor is missing", source);
  scaling.factor = *factor;
  scaling.low_freq_factor = json_fields::optional_double(rs, "low_freq_factor", where).value_or(1.0);
  scaling.high_freq_factor = json_fields::optional_double(rs, "high_freq_factor", where).value_or(4.0);
  scaling.original_max_position_embeddings =
      json_fields::optional_int(rs, "original_max_position_embeddings", where).value_or(8192);
  if (!(scaling.factor > 0.0) || !std::isfinite(scaling.factor)) {
    fail("{}: rope_scaling.factor ({}) must be positive", source, scaling.factor);
  }
  if (!(scaling.low_freq_factor > 0.0) || !std::isfinite(scaling.low_freq_factor)) {
    fail("{}: rope_scaling.low_freq_factor ({}) must be positive", source, scaling.low_freq_factor);
  }
  if (!(scaling.high_freq_factor > scaling.low_freq_factor) || !std::isfinite(scaling.high_freq_factor)) {
    fail("{}: rope_scaling.high_freq_factor ({}) must be greater than low_freq_factor ({})", source,
         scaling.high_freq_factor, scaling.low_freq_factor);
  }
  if (scaling.original_max_position_embeddings <= 0) {
    fail("{}: rope_scaling.original_max_position_embeddings ({}) must be positive", source,
         scaling.original_max_position_embeddings);
  }
  return scaling;
}

void check_architecture(const nlohmann::json& j, const std::string& source) {
  const auto it = j.find("architectures");
  if (it == j.end() || it->is_null()) {
    // Some exported configs omit architectures; model_type still identifies the family.
    const auto model_type = json_fields::optional_string(j, "model_type", source);
    if (model_type && *model_type == "llama") return;
    fail("{}: missing field architectures (expected [\"{}\"])", source, kLlamaArchitecture);
  }
  if (!it->is_array() || it->empty() || !(*it)[0].is_string()) {
    fail("{}: architectures must be a non-empty list of names", source);
  }
  const std::string name = (*it)[0].get<std::string>();
  if (name != kLlamaArchitecture) {
    fail("{}: unsupported architecture '{}' (only {} is supported)", source, name, kLlamaArchitecture);
  }
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail("cannot read {}", path.string());
  return text.str();
}

nlohmann::json parse_json_file(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) fail("{}: file not found", path.string());
  const std::string text = read_text_file(path);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail("{}: invalid JSON", path.string());
  if (!j.is_object()) fail("{}: expected a JSON object at the top level", path.string());
  return j;
}

}  // namespace

LlamaConfig LlamaConfig::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: expected a JSON object", source);
  check_architecture(j, source);
  LlamaConfig c;
  c.architecture = kLlamaArchitecture;
  if (const auto act = json_fields::optional_string(j, "hidden_act", source); act && *act != "silu") {
    fail("{}: hidden_act '{}' is not supported (Llama uses silu)", source, *act);
  }
  c.hidden_size = required_positive_int(j, "hidden_size", source);
  c.intermediate_size = required_positive_int(j, "intermediate_size", source);
  c.num_hidden_layers = required_positive_int(j, "num_hidden_layers", source);
  c.num_attention_heads = required_positive_int(j, "num_attention_heads", source);
  c.num_key_value_heads =
      json_fields::optional_int(j, "num_key_value_heads", source).value_or(c.num_attention_heads);
  if (c.num_key_value_heads <= 0) {
    fail("{}: num_key_value_heads ({}) must be positive", source, c.num_key_value_heads);
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    fail("{}: num_key_value_heads ({}) must divide num_attention_heads ({})", source, c.num_key_value_heads,
         c.num_attention_heads);
  }
  if (const auto head_dim = json_fields::optional_int(j, "head_dim", source)) {
    if (*head_dim <= 0) fail("{}: head_dim ({}) must be positive", source, *head_dim);
    c.head_dim = *head_dim;
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      fail("{}: num_attention_heads ({}) must divide hidden_size ({}) when head_dim is not given", source,
           c.num_attention_heads, c.hidden_size);
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim % 2 != 0) fail("{}: head_dim ({}) must be even for rotary embeddings", source, c.head_dim);
  c.vocab_size = required_positive_int(j, "vocab_size", source);
  c.max_position_embeddings = required_positive_int(j, "max_position_embeddings", source);
  c.rms_norm_eps = positive_double_or(j, "rms_norm_eps", source, 1e-5);
  c.rope_theta = positive_double_or(j, "rope_theta", source, 500000.0);
  c.rope_scaling = parse_rope_scaling(j, source);
  c.tie_word_embeddings = json_fields::optional_bool(j, "tie_word_embeddings", source).value_or(false);
  c.attention_bias = json_fields::optional_bool(j, "attention_bias", source).value_or(false);
  c.mlp_bias = json_fields::optional_bool(j, "mlp_bias", source).value_or(false);
  if (c.attention_bias) fail("{}: attention_bias must be false (Llama 3.1 has no attention biases)", source);
  if (c.mlp_bias) fail("{}: mlp_bias must be false (Llama 3.1 has no MLP biases)", source);
  c.bos_token_id = json_fields::optional_int(j, "bos_token_id", source);
  c.eos_token_ids = json_fields::token_id_list(j, "eos_token_id", source);
  for (const int id : c.eos_token_ids) {
    if (id < 0 || id >= c.vocab_size) {
      fail("{}: eos_token_id {} is outside the vocabulary (size {})", source, id, c.vocab_size);
    }
  }
  if (c.bos_token_id && (*c.bos_token_id < 0 || *c.bos_token_id >= c.vocab_size)) {
    fail("{}: bos_token_id {} is outside the vocabulary (size {})", source, *c.bos_token_id, c.vocab_size);
  }
  c.torch_dtype = json_fields::optional_string(j, "torch_dtype", source).value_or("");
  if (const auto it = j.find("quantization_config"); it != j.end() && !it->is_null()) {
    c.quantization = QuantizationConfig::from_json(*it, source);
  }
  // Every size product the engine forms must fit comfortably in 64 bits.
  const long long q_width = static_cast<long long>(c.num_attention_heads) * c.head_dim;
  if (q_width > (1LL << 31)) fail("{}: num_attention_heads * head_dim ({}) is too large", source, q_width);
  return c;
}

LlamaConfig LlamaConfig::from_file(const std::filesystem::path& config_json) {
  return from_json(parse_json_file(config_json), config_json.string());
}

nlohmann::json LlamaConfig::to_json() const {
  nlohmann::json j;
  j["architectures"] = nlohmann::json::array({architecture.empty() ? kLlamaArchitecture : architecture});
  j["attention_bias"] = attention_bias;
  j["attention_dropout"] = 0.0;
  if (bos_token_id) j["bos_token_id"] = *bos_token_id;
  if (eos_token_ids.size() == 1) {
    j["eos_token_id"] = eos_token_ids[0];
  } else if (!eos_token_ids.empty()) {
    j["eos_token_id"] = eos_token_ids;
  }
  if (num_attention_heads <= 0 || head_dim * num_attention_heads != hidden_size) j["head_dim"] = head_dim;
  j["hidden_act"] = "silu";
  j["hidden_size"] = hidden_size;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = intermediate_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["mlp_bias"] = mlp_bias;
  j["model_type"] = "llama";
  j["num_attention_heads"] = num_attention_heads;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_key_value_heads"] = num_key_value_heads;
  j["pretraining_tp"] = 1;
  if (quantization) j["quantization_config"] = quantization->to_json();
  j["rms_norm_eps"] = rms_norm_eps;
  if (rope_scaling) {
    j["rope_scaling"] = {{"factor", rope_scaling->factor},
                         {"low_freq_factor", rope_scaling->low_freq_factor},
                         {"high_freq_factor", rope_scaling->high_freq_factor},
                         {"original_max_position_embeddings", rope_scaling->original_max_position_embeddings},
                         {"rope_type", rope_scaling->rope_type.empty() ? "llama3" : rope_scaling->rope_type}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["rope_theta"] = rope_theta;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["torch_dtype"] = torch_dtype.empty() ? "bfloat16" : torch_dtype;
  j["transformers_version"] = "4.43.0.dev0";
  j["use_cache"] = true;
  j["vocab_size"] = vocab_size;
  return j;
}

long long LlamaConfig::parameter_count() const {
  const long long hidden = hidden_size;
  const long long q_width = static_cast<long long>(num_attention_heads) * head_dim;
  const long long kv_width = static_cast<long long>(num_key_value_heads) * head_dim;
  const long long embeddings = static_cast<long long>(vocab_size) * hidden;
  const long long attention = q_width * hidden + 2 * kv_width * hidden + hidden * q_width;
  const long long mlp = 3 * static_cast<long long>(intermediate_size) * hidden;
  const long long norms = 2 * hidden;
  const long long per_layer = attention + mlp + norms;
  const long long head = tie_word_embeddings ? 0 : embeddings;
  return embeddings + num_hidden_layers * per_layer + hidden + head;
}

std::vector<double> rope_inverse_frequencies(const LlamaConfig& config) {
  const int dim = config.head_dim;
  std::vector<double> inv_freq(static_cast<size_t>(dim / 2));
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const double exponent = static_cast<double>(2 * i) / dim;
    inv_freq[i] = 1.0 / std::pow(config.rope_theta, exponent);
  }
  if (!config.rope_frequency_factors.empty()) {
    if (config.rope_frequency_factors.size() != inv_freq.size()) {
      fail("rope frequency factors: {} values for head_dim {} (expected {})", config.rope_frequency_factors.size(),
           dim, inv_freq.size());
    }
    for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] /= config.rope_frequency_factors[i];
    return inv_freq;
  }
  if (!config.rope_scaling) return inv_freq;
  const RopeScaling& s = *config.rope_scaling;
  const double original = s.original_max_position_embeddings;
  const double low_freq_wavelen = original / s.low_freq_factor;
  const double high_freq_wavelen = original / s.high_freq_factor;
  for (double& f : inv_freq) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen > low_freq_wavelen) {
      f = f / s.factor;  // long wavelengths: interpolate positions
    } else if (wavelen >= high_freq_wavelen) {
      // The band between (both ends included, as transformers does): blend the two.
      const double smooth = (original / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      f = (1.0 - smooth) * f / s.factor + smooth * f;
    }  // short wavelengths stay as they are
  }
  return inv_freq;
}

GenerationConfig GenerationConfig::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: expected a JSON object", source);
  GenerationConfig g;
  g.bos_token_id = json_fields::optional_int(j, "bos_token_id", source);
  g.eos_token_ids = json_fields::token_id_list(j, "eos_token_id", source);
  g.do_sample = json_fields::optional_bool(j, "do_sample", source);
  g.temperature = json_fields::optional_double(j, "temperature", source);
  g.top_p = json_fields::optional_double(j, "top_p", source);
  g.top_k = json_fields::optional_int(j, "top_k", source);
  g.repetition_penalty = json_fields::optional_double(j, "repetition_penalty", source);
  g.max_new_tokens = json_fields::optional_int(j, "max_new_tokens", source);
  if (g.temperature && (*g.temperature < 0.0 || !std::isfinite(*g.temperature))) {
    fail("{}: temperature ({}) must be >= 0", source, *g.temperature);
  }
  if (g.top_p && !(*g.top_p > 0.0 && *g.top_p <= 1.0)) fail("{}: top_p ({}) must be in (0, 1]", source, *g.top_p);
  if (g.top_k && *g.top_k < 0) fail("{}: top_k ({}) must be >= 0", source, *g.top_k);
  if (g.repetition_penalty && !(*g.repetition_penalty > 0.0 && std::isfinite(*g.repetition_penalty))) {
    fail("{}: repetition_penalty ({}) must be positive", source, *g.repetition_penalty);
  }
  if (g.max_new_tokens && *g.max_new_tokens < 0) {
    fail("{}: max_new_tokens ({}) must be >= 0", source, *g.max_new_tokens);
  }
  return g;
}

GenerationConfig GenerationConfig::from_file_or_empty(const std::filesystem::path& generation_config_json) {
  if (!std::filesystem::exists(generation_config_json)) return {};
  return from_json(parse_json_file(generation_config_json), generation_config_json.string());
}

}  // namespace llama31
