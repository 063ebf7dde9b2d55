#include "model_files/test_model.h"

#include "model_files/json_fields.h"

#include <cmath>
#include <fstream>
#include <numbers>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model_files/model_folder.h"
#include "model_files/safetensors.h"
#include "util/error.h"

namespace llama31 {

namespace {

// xoshiro256** seeded by splitmix64: a small, fast, well-mixed generator that is the same everywhere.
class RandomStream {
 public:
  explicit RandomStream(uint64_t seed) {
    for (uint64_t& word : state_) word = splitmix64(seed);
  }

  uint64_t next() {
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in (0, 1): 53 random bits, never exactly 0.
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }

  // Standard normal by Box-Muller (one value per call keeps the stream simple to reason about).
  double normal() {
    const double u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  static uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

  uint64_t state_[4] = {};
};

// Each tensor gets its own stream (seed mixed with the tensor's name), so a tensor's values do not
// depend on which other tensors are written.
uint64_t stream_seed(uint64_t seed, const std::string& name) {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a
  for (const char ch : name) {
    hash ^= static_cast<unsigned char>(ch);
    hash *= 0x100000001b3ull;
  }
  return seed ^ hash;
}

float round_to_dtype(float value, DType dtype) {
  switch (dtype) {
    case DType::BF16: return bf16_to_f32(f32_to_bf16(value));
    case DType::F16: return f16_to_f32(f32_to_f16(value));
    case DType::F32: return value;
    case DType::I32:
    case DType::F8_E4M3:
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::Q8_0_R16:
    case DType::Q4_0_R16: break;
  }
  fail("test models are written in BF16, F16 or F32, not {}", dtype_name(dtype));
}

std::vector<uint8_t> encode(const std::vector<float>& values, DType dtype) {
  std::vector<uint8_t> bytes(values.size() * dtype_size(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::F32) {
      std::memcpy(bytes.data() + 4 * i, &values[i], 4);
    } else {
      const uint16_t half = dtype == DType::BF16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
      std::memcpy(bytes.data() + 2 * i, &half, 2);
    }
  }
  return bytes;
}

enum class Init { Normal, NormWeight };

struct TensorPlan {
  std::string name;
  std::vector<int64_t> shape;
  Init init = Init::Normal;
  double stddev = 1.0;
};

std::vector<TensorPlan> plan_tensors(const LlamaConfig& c, double logit_std) {
  const int64_t hidden = c.hidden_size;
  const int64_t q_width = static_cast<int64_t>(c.num_attention_heads) * c.head_dim;
  const int64_t kv_width = static_cast<int64_t>(c.num_key_value_heads) * c.head_dim;
  const int64_t inter = c.intermediate_size;
  const double hidden_scale = 1.0 / std::sqrt(static_cast<double>(hidden));
  std::vector<TensorPlan> plan;
  plan.push_back({"model.embed_tokens.weight", {c.vocab_size, hidden}, Init::Normal, 1.0});
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const auto name = [layer](const char* suffix) { return layer_tensor_name(layer, suffix); };
    plan.push_back({name("input_layernorm.weight"), {hidden}, Init::NormWeight, 0.0});
    plan.push_back({name("self_attn.q_proj.weight"), {q_width, hidden}, Init::Normal, hidden_scale});
    plan.push_back({name("self_attn.k_proj.weight"), {kv_width, hidden}, Init::Normal, hidden_scale});
    plan.push_back({name("self_attn.v_proj.weight"), {kv_width, hidden}, Init::Normal, hidden_scale});
    plan.push_back({name("self_attn.o_proj.weight"), {hidden, q_width}, Init::Normal,
                    1.0 / std::sqrt(static_cast<double>(q_width))});
    plan.push_back({name("post_attention_layernorm.weight"), {hidden}, Init::NormWeight, 0.0});
    plan.push_back({name("mlp.gate_proj.weight"), {inter, hidden}, Init::Normal, hidden_scale});
    plan.push_back({name("mlp.up_proj.weight"), {inter, hidden}, Init::Normal, hidden_scale});
    plan.push_back({name("mlp.down_proj.weight"), {hidden, inter}, Init::Normal,
                    1.0 / std::sqrt(static_cast<double>(inter))});
  }
  plan.push_back({"model.norm.weight", {hidden}, Init::NormWeight, 0.0});
  // The final hidden state has RMS about 1 after the norm, so logits have std about stddev*sqrt(hidden).
  if (!c.tie_word_embeddings) {
    plan.push_back({"lm_head.weight", {c.vocab_size, hidden}, Init::Normal, logit_std * hidden_scale});
  }
  return plan;
}

nlohmann::json test_config_json(const TestModelSpec& spec) {
  LlamaConfig c;
  c.architecture = "LlamaForCausalLM";
  c.hidden_size = spec.hidden_size;
  c.intermediate_size = spec.intermediate_size;
  c.num_hidden_layers = spec.num_hidden_layers;
  c.num_attention_heads = spec.num_attention_heads;
  c.num_key_value_heads = spec.num_key_value_heads;
  c.head_dim = spec.head_dim > 0 || spec.num_attention_heads <= 0 ? spec.head_dim
                                                                   : spec.hidden_size / spec.num_attention_heads;
  c.vocab_size = spec.vocab_size;
  c.max_position_embeddings = spec.max_position_embeddings;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 8192};
  c.tie_word_embeddings = spec.tie_word_embeddings;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128008, 128009};
  switch (spec.dtype) {
    case DType::BF16: c.torch_dtype = "bfloat16"; break;
    case DType::F16: c.torch_dtype = "float16"; break;
    case DType::F32: c.torch_dtype = "float32"; break;
    case DType::I32:
    case DType::F8_E4M3:
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::Q8_0_R16:
    case DType::Q4_0_R16: fail("test models are written in BF16, F16 or F32, not {}", dtype_name(spec.dtype));
  }
  nlohmann::json j = c.to_json();
  // Keep token ids inside small test vocabularies so the config stays valid.
  if (spec.vocab_size <= 128009) {
    j.erase("bos_token_id");
    j["eos_token_id"] = spec.vocab_size - 1;
  }
  return j;
}

void copy_tokenizer(const std::filesystem::path& from, const std::filesystem::path& to) {
  const auto options = std::filesystem::copy_options::overwrite_existing;
  if (!std::filesystem::exists(from / "tokenizer.json")) {
    fail("{}: file not found (tokenizer for the test model)", (from / "tokenizer.json").string());
  }
  std::filesystem::copy_file(from / "tokenizer.json", to / "tokenizer.json", options);
  for (const char* optional_file : {"tokenizer_config.json", "special_tokens_map.json"}) {
    if (std::filesystem::exists(from / optional_file)) {
      std::filesystem::copy_file(from / optional_file, to / optional_file, options);
    }
  }
}

// Removes weight files an earlier write left, so the folder holds exactly one checkpoint.
void remove_old_weights(const std::filesystem::path& dir) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string file = entry.path().filename().string();
    if (file == "model.safetensors.index.json" ||
        (file.starts_with("model") && entry.path().extension() == ".safetensors")) {
      std::filesystem::remove(entry.path());
    }
  }
}

}  // namespace

std::filesystem::path bundled_tokenizer_dir() {
  return std::filesystem::path(LLAMA31_DATA_DIR) / "llama-3.1-tokenizer";
}

TestModelWeights write_test_model(const std::filesystem::path& dir, const TestModelSpec& spec,
                                  const std::filesystem::path& tokenizer_dir) {
  if (spec.shards < 1) fail("test model: shards ({}) must be at least 1", spec.shards);
  const nlohmann::json config_json = test_config_json(spec);
  TestModelWeights result;
  result.config = LlamaConfig::from_json(config_json, "test model config");  // validates the spec

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) fail("cannot create folder {}", dir.string());
  remove_old_weights(dir);
  json_fields::write_json_file(dir / "config.json", config_json);
  nlohmann::json generation = {{"do_sample", true}, {"temperature", 0.6}, {"top_p", 0.9},
                               {"transformers_version", "4.42.3"}};
  if (config_json.contains("bos_token_id")) generation["bos_token_id"] = config_json["bos_token_id"];
  generation["eos_token_id"] = config_json["eos_token_id"];
  json_fields::write_json_file(dir / "generation_config.json", generation);
  copy_tokenizer(tokenizer_dir.empty() ? bundled_tokenizer_dir() : tokenizer_dir, dir);

  const double logit_std = spec.init_scale > 0.0f ? static_cast<double>(spec.init_scale) : 3.0;
  const std::vector<TensorPlan> plan = plan_tensors(result.config, logit_std);
  if (static_cast<size_t>(spec.shards) > plan.size()) {
    fail("test model: {} shards for only {} tensors", spec.shards, plan.size());
  }
  std::vector<std::vector<TensorToWrite>> shards(static_cast<size_t>(spec.shards));
  nlohmann::json weight_map = nlohmann::json::object();
  uint64_t total_bytes = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    const TensorPlan& p = plan[i];
    int64_t numel = 1;
    for (const int64_t d : p.shape) numel *= d;
    RandomStream rng(stream_seed(spec.seed, p.name));
    std::vector<float> values(static_cast<size_t>(numel));
    for (float& v : values) {
      const double raw = p.init == Init::NormWeight ? 0.8 + 0.4 * rng.uniform() : p.stddev * rng.normal();
      v = round_to_dtype(static_cast<float>(raw), spec.dtype);
    }
    const size_t shard = i * shards.size() / plan.size();
    shards[shard].push_back({p.name, spec.dtype, p.shape, encode(values, spec.dtype)});
    total_bytes += shards[shard].back().data.size();
    weight_map[p.name] = fmt::format("model-{:05d}-of-{:05d}.safetensors", shard + 1, spec.shards);
    result.tensors.emplace(p.name, std::move(values));
  }
  const std::map<std::string, std::string> metadata{{"format", "pt"}};
  if (spec.shards == 1) {
    write_safetensors(dir / "model.safetensors", shards[0], metadata);
  } else {
    for (size_t s = 0; s < shards.size(); ++s) {
      const std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, spec.shards);
      write_safetensors(dir / file, shards[s], metadata);
    }
    json_fields::write_json_file(dir / "model.safetensors.index.json",
               {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}});
  }
  return result;
}

}  // namespace llama31
