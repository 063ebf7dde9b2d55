// Model folders: the tiny test checkpoint opens, matches what was written, and broken folders fail clearly.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "model_files/model_folder.h"
#include "model_files/test_model.h"
#include "model_files_test_util.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

using testing::expect_error;

std::vector<float> stored_values(const TensorView& view) {
  std::vector<float> out(static_cast<size_t>(view.numel()));
  convert_to_f32(view.dtype, view.data, out.data(), out.size());
  return out;
}

// Every tensor in the folder equals, bit for bit, the float the writer returned.
void expect_weights_match(const ModelFolder& folder, const TestModelWeights& weights, DType dtype) {
  EXPECT_EQ(folder.weights.names().size(), weights.tensors.size());
  for (const auto& [name, values] : weights.tensors) {
    SCOPED_TRACE(name);
    const TensorView& view = folder.weights.get(name);
    EXPECT_EQ(view.dtype, dtype);
    ASSERT_EQ(static_cast<size_t>(view.numel()), values.size());
    EXPECT_EQ(stored_values(view), values);
  }
}

TestModelSpec small_spec(DType dtype, int shards = 1) {
  TestModelSpec spec;
  spec.dtype = dtype;
  spec.shards = shards;
  spec.vocab_size = 1000;  // small and fast; the real vocabulary is covered by DefaultSpecIsLlama31Like
  return spec;
}

TEST(TestModel, DefaultSpecIsLlama31Like) {
  testing::TempDir dir;
  const TestModelWeights weights = write_test_model(dir.path());
  const ModelFolder folder = ModelFolder::open(dir.path());
  const LlamaConfig& c = folder.config;
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_FALSE(c.tie_word_embeddings);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(folder.generation.do_sample, true);
  EXPECT_DOUBLE_EQ(folder.generation.temperature.value(), 0.6);
  EXPECT_DOUBLE_EQ(folder.generation.top_p.value(), 0.9);
  EXPECT_EQ(folder.generation.eos_token_ids, c.eos_token_ids);
  EXPECT_EQ(folder.tokenizer_json, dir.path() / "tokenizer.json");
  EXPECT_EQ(testing::read_bytes(folder.tokenizer_json),
            testing::read_bytes(bundled_tokenizer_dir() / "tokenizer.json"));
  EXPECT_TRUE(std::filesystem::exists(folder.tokenizer_config_json));
  EXPECT_EQ(weights.config.to_json(), c.to_json());
  expect_weights_match(folder, weights, DType::BF16);

  long long tensor_elements = 0;
  for (const auto& [name, values] : weights.tensors) tensor_elements += static_cast<long long>(values.size());
  EXPECT_EQ(c.parameter_count(), tensor_elements);
}

TEST(TestModel, WeightsAreRandomButScaledForAPeakedDistribution) {
  testing::TempDir dir;
  const TestModelWeights weights = write_test_model(dir.path(), small_spec(DType::F32));
  const auto stddev = [](const std::vector<float>& v) {
    double sum = 0, sum_sq = 0;
    for (const float x : v) {
      sum += x;
      sum_sq += static_cast<double>(x) * x;
    }
    const double mean = sum / static_cast<double>(v.size());
    return std::sqrt(sum_sq / static_cast<double>(v.size()) - mean * mean);
  };
  EXPECT_NEAR(stddev(weights.tensors.at("model.embed_tokens.weight")), 1.0, 0.05);
  EXPECT_NEAR(stddev(weights.tensors.at("model.layers.0.mlp.gate_proj.weight")), 1.0 / 8.0, 0.01);
  EXPECT_NEAR(stddev(weights.tensors.at("model.layers.1.mlp.down_proj.weight")), 1.0 / std::sqrt(192.0), 0.01);
  // The head makes logits of a unit-RMS hidden state spread by about 3: clearly not uniform.
  EXPECT_NEAR(stddev(weights.tensors.at("lm_head.weight")) * 8.0, 3.0, 0.2);
  for (const char* norm : {"model.norm.weight", "model.layers.0.input_layernorm.weight"}) {
    const std::vector<float>& v = weights.tensors.at(norm);
    bool any_not_one = false;
    for (const float x : v) {
      EXPECT_GE(x, 0.8f);
      EXPECT_LE(x, 1.2f);
      any_not_one = any_not_one || x != 1.0f;
    }
    EXPECT_TRUE(any_not_one) << norm;
  }
}

TEST(TestModel, SameSeedSameWeightsOtherSeedOtherWeights) {
  testing::TempDir a, b, c;
  TestModelSpec spec = small_spec(DType::BF16);
  const TestModelWeights first = write_test_model(a.path(), spec);
  const TestModelWeights again = write_test_model(b.path(), spec);
  spec.seed += 1;
  const TestModelWeights other = write_test_model(c.path(), spec);
  EXPECT_EQ(first.tensors, again.tensors);
  EXPECT_EQ(testing::read_bytes(a.path() / "model.safetensors"), testing::read_bytes(b.path() / "model.safetensors"));
  EXPECT_NE(first.tensors.at("model.layers.0.self_attn.q_proj.weight"),
            other.tensors.at("model.layers.0.self_attn.q_proj.weight"));
  // Distinct tensors of the same shape do not repeat each other.
  EXPECT_NE(first.tensors.at("model.layers.0.mlp.gate_proj.weight"),
            first.tensors.at("model.layers.0.mlp.up_proj.weight"));
}

TEST(TestModel, EveryDtypeAndShardingOpensAndMatches) {
  for (const DType dtype : {DType::BF16, DType::F16, DType::F32}) {
    for (const int shards : {1, 3}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " shards=" + std::to_string(shards));
      testing::TempDir dir;
      const TestModelWeights weights = write_test_model(dir.path(), small_spec(dtype, shards));
      EXPECT_EQ(std::filesystem::exists(dir.path() / "model.safetensors.index.json"), shards > 1);
      EXPECT_EQ(std::filesystem::exists(dir.path() / "model-00003-of-00003.safetensors"), shards == 3);
      const ModelFolder folder = ModelFolder::open(dir.path());
      expect_weights_match(folder, weights, dtype);
    }
  }
}

TEST(TestModel, RewritingAFolderReplacesShardsWithASingleFile) {
  testing::TempDir dir;
  write_test_model(dir.path(), small_spec(DType::BF16, 2));
  const TestModelWeights weights = write_test_model(dir.path(), small_spec(DType::F32, 1));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "model.safetensors.index.json"));
  expect_weights_match(ModelFolder::open(dir.path()), weights, DType::F32);
}

TEST(TestModel, TiedEmbeddingsHaveNoHead) {
  testing::TempDir dir;
  TestModelSpec spec = small_spec(DType::BF16);
  spec.tie_word_embeddings = true;
  const TestModelWeights weights = write_test_model(dir.path(), spec);
  EXPECT_EQ(weights.tensors.count("lm_head.weight"), 0u);
  const ModelFolder folder = ModelFolder::open(dir.path());
  EXPECT_TRUE(folder.config.tie_word_embeddings);
  EXPECT_EQ(folder.weights.find("lm_head.weight"), nullptr);
}

TEST(TestModel, InvalidSpecsAreErrors) {
  testing::TempDir dir;
  TestModelSpec spec = small_spec(DType::BF16);
  spec.num_key_value_heads = 3;
  expect_error([&] { write_test_model(dir.path(), spec); }, {"num_key_value_heads (3)"});
  spec = small_spec(DType::BF16);
  spec.shards = 0;
  expect_error([&] { write_test_model(dir.path(), spec); }, {"shards"});
  spec = small_spec(DType::BF16);
  expect_error([&] { write_test_model(dir.path(), spec, dir.path() / "no-tokenizer-here"); },
               {"no-tokenizer-here", "tokenizer.json"});
}

// Rewrites the folder's single safetensors file through edit (drop or change tensors).
void rewrite_weights(const std::filesystem::path& dir, const std::function<void(std::vector<TensorToWrite>&)>& edit) {
  std::vector<TensorToWrite> tensors;
  {
    const TensorStore store = TensorStore::open_folder(dir);
    for (const std::string& name : store.names()) {
      const TensorView& v = store.get(name);
      const auto* bytes = reinterpret_cast<const uint8_t*>(v.data);
      tensors.push_back({name, v.dtype, v.shape, std::vector<uint8_t>(bytes, bytes + v.nbytes)});
    }
  }
  edit(tensors);
  write_safetensors(dir / "model.safetensors", tensors);
}

void edit_config(const std::filesystem::path& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(testing::read_bytes(dir / "config.json"));
  edit(j);
  testing::write_text(dir / "config.json", j.dump());
}

class BrokenFolder : public ::testing::Test {
 protected:
  void SetUp() override { write_test_model(dir_.path(), small_spec(DType::BF16)); }
  void expect_open_fails(std::initializer_list<std::string> fragments) {
    expect_error([&] { ModelFolder::open(dir_.path()); }, fragments);
  }
  testing::TempDir dir_;
};

TEST_F(BrokenFolder, MissingFolder) {
  const auto missing = dir_.path() / "nowhere";
  expect_error([&] { ModelFolder::open(missing); }, {missing.string(), "does not exist"});
  expect_error([&] { ModelFolder::open(dir_.path() / "config.json"); }, {"config.json", "not a folder"});
}

TEST_F(BrokenFolder, MissingConfig) {
  std::filesystem::remove(dir_.path() / "config.json");
  expect_open_fails({(dir_.path() / "config.json").string(), "not found"});
}

TEST_F(BrokenFolder, MissingTokenizer) {
  std::filesystem::remove(dir_.path() / "tokenizer.json");
  expect_open_fails({(dir_.path() / "tokenizer.json").string(), "not found"});
}

TEST_F(BrokenFolder, MissingGenerationConfigIsFine) {
  std::filesystem::remove(dir_.path() / "generation_config.json");
  EXPECT_FALSE(ModelFolder::open(dir_.path()).generation.temperature.has_value());
}

TEST_F(BrokenFolder, MalformedGenerationConfig) {
  testing::write_text(dir_.path() / "generation_config.json", "{\"top_p\": 0.9,,}");
  expect_open_fails({"generation_config.json", "invalid JSON"});
}

TEST_F(BrokenFolder, MissingWeights) {
  std::filesystem::remove(dir_.path() / "model.safetensors");
  expect_open_fails({"model.safetensors", dir_.path().string()});
}

TEST_F(BrokenFolder, MissingTensor) {
  rewrite_weights(dir_.path(), [](std::vector<TensorToWrite>& tensors) {
    std::erase_if(tensors, [](const TensorToWrite& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; });
  });
  expect_open_fails({"missing tensor model.layers.1.mlp.up_proj.weight"});
}

TEST_F(BrokenFolder, MissingHeadWhenUntied) {
  rewrite_weights(dir_.path(), [](std::vector<TensorToWrite>& tensors) {
    std::erase_if(tensors, [](const TensorToWrite& t) { return t.name == "lm_head.weight"; });
  });
  expect_open_fails({"missing tensor lm_head.weight"});
}

TEST_F(BrokenFolder, ConfigAndWeightsDisagreeOnAShape) {
  edit_config(dir_.path(), [](nlohmann::json& j) { j["intermediate_size"] = 128; });
  expect_open_fails({"model.layers.0.mlp.gate_proj.weight", "[192, 64]", "[128, 64]"});
}

TEST_F(BrokenFolder, TransposedTensor) {
  rewrite_weights(dir_.path(), [](std::vector<TensorToWrite>& tensors) {
    for (TensorToWrite& t : tensors) {
      if (t.name == "model.layers.0.self_attn.k_proj.weight") t.shape = {64, 16};
    }
  });
  expect_open_fails({"model.layers.0.self_attn.k_proj.weight", "[64, 16]", "[16, 64]"});
}

TEST_F(BrokenFolder, MoreLayersThanTheConfigSays) {
  edit_config(dir_.path(), [](nlohmann::json& j) { j["num_hidden_layers"] = 1; });
  expect_open_fails({"num_hidden_layers (1)"});
}

TEST_F(BrokenFolder, UnsupportedArchitecture) {
  edit_config(dir_.path(), [](nlohmann::json& j) { j["architectures"] = {"Qwen2ForCausalLM"}; });
  expect_open_fails({"config.json", "Qwen2ForCausalLM"});
}

TEST_F(BrokenFolder, UnsupportedDtypeInAWeightFile) {
  const std::string header = R"({"model.norm.weight":{"dtype":"I8","shape":[64],"data_offsets":[0,64]}})";
  testing::write_bytes(dir_.path() / "model.safetensors", testing::raw_safetensors(header, std::string(64, '\0')));
  expect_open_fails({"model.safetensors", "model.norm.weight", "I8"});
}

TEST_F(BrokenFolder, QuantizedDtypeWithoutAQuantizationConfig) {
  // I32 and F8_E4M3 are read (quantized checkpoints hold them) but are no weights on their own.
  rewrite_weights(dir_.path(), [](std::vector<TensorToWrite>& tensors) {
    for (TensorToWrite& t : tensors) {
      if (t.name == "model.norm.weight") {
        t.dtype = DType::I32;
        t.data.assign(64 * 4, 1);
      }
      if (t.name == "model.layers.1.mlp.up_proj.weight") {
        t.dtype = DType::F8_E4M3;
        t.data.resize(t.data.size() / 2);
      }
    }
  });
  expect_open_fails({"model.layers.1.mlp.up_proj.weight", "F8_E4M3", "quantization_config"});
}

}  // namespace
}  // namespace llama31
