// config.json / generation_config.json parsing and the llama3 rotary frequencies.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <nlohmann/json.hpp>

#include "model_files/config.h"
#include "model_files_test_util.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

using testing::expect_error;

// config.json of meta-llama/Llama-3.1-8B-Instruct as published.
nlohmann::json real_8b_config() {
  return nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})");
}

TEST(LlamaConfig, ParsesTheReal8BInstructConfig) {
  const LlamaConfig c = LlamaConfig::from_json(real_8b_config(), "config.json");
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);  // not in the file: hidden_size / num_attention_heads
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->rope_type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  // The published parameter count of Llama 3.1 8B.
  EXPECT_EQ(c.parameter_count(), 8030261248LL);
}

TEST(LlamaConfig, EosTokenIdMayBeASingleNumber) {
  nlohmann::json j = real_8b_config();
  j["eos_token_id"] = 128001;  // the base (non-Instruct) model's config
  EXPECT_EQ(LlamaConfig::from_json(j, "config.json").eos_token_ids, std::vector<int>{128001});
  j["eos_token_id"] = nullptr;
  EXPECT_TRUE(LlamaConfig::from_json(j, "config.json").eos_token_ids.empty());
}

TEST(LlamaConfig, AcceptsTheOlderTypeKeyForRopeScaling) {
  nlohmann::json j = real_8b_config();
  j["rope_scaling"].erase("rope_type");
  j["rope_scaling"]["type"] = "llama3";
  j["rope_scaling"]["factor"] = 16.0;
  const LlamaConfig c = LlamaConfig::from_json(j, "config.json");
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->rope_type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 16.0);
}

TEST(LlamaConfig, NullRopeScalingMeansNone) {
  nlohmann::json j = real_8b_config();
  j["rope_scaling"] = nullptr;
  EXPECT_FALSE(LlamaConfig::from_json(j, "config.json").rope_scaling.has_value());
  j.erase("rope_scaling");
  EXPECT_FALSE(LlamaConfig::from_json(j, "config.json").rope_scaling.has_value());
}

TEST(LlamaConfig, ExplicitHeadDimAndTiedEmbeddingsChangeTheParameterCount) {
  nlohmann::json j = real_8b_config();
  j["head_dim"] = 64;
  j["tie_word_embeddings"] = true;
  const LlamaConfig c = LlamaConfig::from_json(j, "config.json");
  EXPECT_EQ(c.head_dim, 64);
  const long long hidden = 4096, vocab = 128256, inter = 14336, q = 32 * 64, kv = 8 * 64;
  const long long per_layer = 2 * q * hidden + 2 * kv * hidden + 3 * inter * hidden + 2 * hidden;
  EXPECT_EQ(c.parameter_count(), vocab * hidden + 32 * per_layer + hidden);
}

TEST(LlamaConfig, ToJsonRoundTrips) {
  const LlamaConfig c = LlamaConfig::from_json(real_8b_config(), "config.json");
  const LlamaConfig again = LlamaConfig::from_json(c.to_json(), "again");
  EXPECT_EQ(again.to_json(), c.to_json());
  EXPECT_EQ(again.eos_token_ids, c.eos_token_ids);
  EXPECT_EQ(again.head_dim, 128);
  EXPECT_EQ(again.rope_scaling->original_max_position_embeddings, 8192);
}

TEST(LlamaConfig, RejectsAnUnsupportedArchitectureByName) {
  nlohmann::json j = real_8b_config();
  j["architectures"] = {"MistralForCausalLM"};
  expect_error([&] { LlamaConfig::from_json(j, "config.json"); }, {"config.json", "MistralForCausalLM"});
  j["architectures"] = nlohmann::json::array();
  expect_error([&] { LlamaConfig::from_json(j, "config.json"); }, {"config.json", "architectures"});
}

TEST(LlamaConfig, RejectsKvHeadsThatDoNotDivideHeads) {
  nlohmann::json j = real_8b_config();
  j["num_key_value_heads"] = 3;
  expect_error([&] { LlamaConfig::from_json(j, "config.json"); },
               {"config.json: num_key_value_heads (3) must divide num_attention_heads (32)"});
}

TEST(LlamaConfig, RejectsBadSizesNamingTheField) {
  const std::vector<std::pair<std::string, nlohmann::json>> bad_values = {
      {"hidden_size", 0},           {"hidden_size", -4096},         {"num_hidden_layers", 0},
      {"intermediate_size", "big"}, {"vocab_size", 1.5},            {"num_attention_heads", -1},
      {"num_key_value_heads", 0},   {"max_position_embeddings", 0}, {"head_dim", 0},
      {"head_dim", 127},            {"rms_norm_eps", 0.0},          {"rope_theta", -1.0},
      {"vocab_size", 1e12},         {"tie_word_embeddings", "no"},  {"eos_token_id", "</s>"},
      {"eos_token_id", 200000},     {"bos_token_id", -1},           {"hidden_act", "gelu"},
  };
  for (const auto& [field, value] : bad_values) {
    SCOPED_TRACE(field + " = " + value.dump());
    nlohmann::json j = real_8b_config();
    j[field] = value;
    expect_error([&] { LlamaConfig::from_json(j, "config.json"); }, {"config.json", field});
  }
}

TEST(LlamaConfig, RejectsMissingRequiredFields) {
  for (const char* field : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                            "vocab_size", "max_position_embeddings"}) {
    SCOPED_TRACE(field);
    nlohmann::json j = real_8b_config();
    j.erase(field);
    expect_error([&] { LlamaConfig::from_json(j, "config.json"); }, {"config.json", "missing", field});
  }
}

TEST(LlamaConfig, HiddenSizeMustSplitIntoHeadsWithoutHeadDim) {
  nlohmann::json j = real_8b_config();
  j["hidden_size"] = 4100;
  expect_error([&] { LlamaConfig::from_json(j, "config.json"); }, {"hidden_size (4100)", "num_attention_heads (32)"});
}

TEST(LlamaConfig, RejectsBiases) {
  for (const char* field : {"attention_bias", "mlp_bias"}) {
    nlohmann::json j = real_8b_config();
    j[field] = true;
    expect_error([&] { LlamaConfig::from_json(j, "config.json"); }, {"config.json", field, "false"});
  }
}

TEST(LlamaConfig, RejectsOtherRopeTypesAndBadRopeParameters) {
  nlohmann::json j = real_8b_config();
  j["rope_scaling"]["rope_type"] = "yarn";
  expect_error([&] { LlamaConfig::from_json(j, "config.json"); }, {"config.json", "yarn", "llama3"});
  j = real_8b_config();
  j["rope_scaling"].erase("rope_type");
  j["rope_scaling"]["type"] = "linear";
  expect_error([&] { LlamaConfig::from_json(j, "config.json"); }, {"config.json", "linear"});
  j = real_8b_config();
  j["rope_scaling"]["high_freq_factor"] = 1.0;  // equal to low: the blend would divide by zero
  expect_error([&] { LlamaConfig::from_json(j, "config.json"); }, {"high_freq_factor"});
  j = real_8b_config();
  j["rope_scaling"]["factor"] = 0;
  expect_error([&] { LlamaConfig::from_json(j, "config.json"); }, {"rope_scaling.factor"});
  j = real_8b_config();
  j["rope_scaling"].erase("rope_type");
  expect_error([&] { LlamaConfig::from_json(j, "config.json"); }, {"rope_type"});
  j = real_8b_config();
  j["rope_scaling"] = "llama3";
  expect_error([&] { LlamaConfig::from_json(j, "config.json"); }, {"rope_scaling"});
}

TEST(LlamaConfig, FileErrorsNameThePath) {
  testing::TempDir dir;
  const auto missing = dir.path() / "config.json";
  expect_error([&] { LlamaConfig::from_file(missing); }, {missing.string(), "not found"});
  testing::write_text(missing, "{\"hidden_size\": 4096,");
  expect_error([&] { LlamaConfig::from_file(missing); }, {missing.string(), "invalid JSON"});
  testing::write_text(missing, "[1, 2]");
  expect_error([&] { LlamaConfig::from_file(missing); }, {missing.string()});
  testing::write_text(missing, real_8b_config().dump());
  EXPECT_EQ(LlamaConfig::from_file(missing).hidden_size, 4096);
}

// The llama3 rule, written independently of the library from Meta's description: a frequency's
// wavelength is compared with the original context; long ones are slowed by `factor`, short ones kept,
// and in between the two are mixed by how many wavelengths fit into the original context.
double expected_llama3_frequency(double theta, int head_dim, int pair, const RopeScaling& s) {
  const double unscaled = std::exp(-std::log(theta) * (2.0 * pair) / head_dim);
  const double wavelengths_in_context = s.original_max_position_embeddings * unscaled / (2.0 * std::numbers::pi);
  if (wavelengths_in_context < s.low_freq_factor) return unscaled / s.factor;
  if (wavelengths_in_context > s.high_freq_factor) return unscaled;
  const double mix = (wavelengths_in_context - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  return unscaled * (mix + (1.0 - mix) / s.factor);
}

TEST(RopeFrequencies, MatchTheLlama3RuleForThe8BConfig) {
  const LlamaConfig c = LlamaConfig::from_json(real_8b_config(), "config.json");
  const std::vector<double> inv_freq = rope_inverse_frequencies(c);
  ASSERT_EQ(inv_freq.size(), 64u);
  int kept = 0, slowed = 0, blended = 0;
  for (int i = 0; i < 64; ++i) {
    const double unscaled = std::pow(500000.0, -2.0 * i / 128.0);
    const double expected = expected_llama3_frequency(500000.0, 128, i, *c.rope_scaling);
    EXPECT_NEAR(inv_freq[static_cast<size_t>(i)], expected, 1e-12 * expected) << "pair " << i;
    if (std::abs(expected - unscaled) < 1e-15 * unscaled) ++kept;
    else if (std::abs(expected - unscaled / 8.0) < 1e-15 * unscaled) ++slowed;
    else ++blended;
  }
  // All three bands occur in the 8B model (pairs 29..34 are blended).
  EXPECT_GT(kept, 0);
  EXPECT_GT(slowed, 0);
  EXPECT_EQ(blended, 6);
  // Values a reader can check by hand: the first pair is untouched, the last divided by 8.
  EXPECT_DOUBLE_EQ(inv_freq[0], 1.0);
  EXPECT_NEAR(inv_freq[63], std::pow(500000.0, -126.0 / 128.0) / 8.0, 1e-18);
}

TEST(RopeFrequencies, WithoutScalingArePlainPowersOfTheta) {
  nlohmann::json j = real_8b_config();
  j["rope_scaling"] = nullptr;
  j["rope_theta"] = 10000.0;
  j["head_dim"] = 16;
  const std::vector<double> inv_freq = rope_inverse_frequencies(LlamaConfig::from_json(j, "config.json"));
  ASSERT_EQ(inv_freq.size(), 8u);
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    EXPECT_NEAR(inv_freq[i], 1.0 / std::pow(10000.0, static_cast<double>(2 * i) / 16.0), 1e-15);
  }
}

TEST(RopeFrequencies, OtherScalingParametersAreHonoured) {
  nlohmann::json j = real_8b_config();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 2.0},
                       {"high_freq_factor", 8.0}, {"original_max_position_embeddings", 4096}};
  j["head_dim"] = 64;
  const LlamaConfig c = LlamaConfig::from_json(j, "config.json");
  const std::vector<double> inv_freq = rope_inverse_frequencies(c);
  ASSERT_EQ(inv_freq.size(), 32u);
  for (int i = 0; i < 32; ++i) {
    const double expected = expected_llama3_frequency(500000.0, 64, i, *c.rope_scaling);
    EXPECT_NEAR(inv_freq[static_cast<size_t>(i)], expected, 1e-12 * expected) << "pair " << i;
  }
}

TEST(GenerationConfig, ParsesTheReal8BInstructFile) {
  const auto j = nlohmann::json::parse(R"({"bos_token_id": 128000, "do_sample": true,
      "eos_token_id": [128001, 128008, 128009], "temperature": 0.6, "top_p": 0.9,
      "transformers_version": "4.42.3"})");
  const GenerationConfig g = GenerationConfig::from_json(j, "generation_config.json");
  EXPECT_EQ(g.bos_token_id, 128000);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(g.do_sample, true);
  EXPECT_DOUBLE_EQ(g.temperature.value(), 0.6);
  EXPECT_DOUBLE_EQ(g.top_p.value(), 0.9);
  EXPECT_FALSE(g.top_k.has_value());
  EXPECT_FALSE(g.repetition_penalty.has_value());
  EXPECT_FALSE(g.max_new_tokens.has_value());
}

TEST(GenerationConfig, ReadsOptionalSamplingFields) {
  const auto j = nlohmann::json::parse(
      R"({"eos_token_id": 2, "top_k": 40, "repetition_penalty": 1.1, "max_new_tokens": 256, "do_sample": false})");
  const GenerationConfig g = GenerationConfig::from_json(j, "generation_config.json");
  EXPECT_EQ(g.eos_token_ids, std::vector<int>{2});
  EXPECT_EQ(g.top_k, 40);
  EXPECT_DOUBLE_EQ(g.repetition_penalty.value(), 1.1);
  EXPECT_EQ(g.max_new_tokens, 256);
  EXPECT_EQ(g.do_sample, false);
}

TEST(GenerationConfig, MissingFileIsEmptyAndMalformedFileIsAnError) {
  testing::TempDir dir;
  const auto path = dir.path() / "generation_config.json";
  const GenerationConfig empty = GenerationConfig::from_file_or_empty(path);
  EXPECT_FALSE(empty.temperature.has_value());
  EXPECT_FALSE(empty.do_sample.has_value());
  EXPECT_TRUE(empty.eos_token_ids.empty());
  testing::write_text(path, "{\"temperature\": ");
  expect_error([&] { GenerationConfig::from_file_or_empty(path); }, {path.string(), "invalid JSON"});
  testing::write_text(path, "{\"temperature\": \"hot\"}");
  expect_error([&] { GenerationConfig::from_file_or_empty(path); }, {path.string(), "temperature"});
  testing::write_text(path, "{\"top_p\": 1.5}");
  expect_error([&] { GenerationConfig::from_file_or_empty(path); }, {path.string(), "top_p"});
  testing::write_text(path, "{\"eos_token_id\": [1, \"x\"]}");
  expect_error([&] { GenerationConfig::from_file_or_empty(path); }, {path.string(), "eos_token_id"});
}

}  // namespace
}  // namespace llama31
