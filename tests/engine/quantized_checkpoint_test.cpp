// Quantized checkpoints as published (AWQ, GPTQ with act-order, fbgemm FP8) load through ModelFolder
// and run: the logits equal those of the same model written densely with the weights the quantized
// layers stand for (FP8: close, its activations are quantized per token too).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <span>

#include "engine/generator.h"
#include "kernels/kernels.h"
#include "engine/llama_model.h"
#include "logits_test_support.h"
#include "model_files/quantized_weights.h"
#include "model_files/test_model.h"
#include "support/numeric.h"
#include "support/quantized_layouts.h"
#include "support/temp_dir.h"
#include "util/error.h"

namespace llama31 {
namespace {

using testing::relative_rms;

bool is_linear(const std::string& name) {
  const std::string suffix = "_proj.weight";
  return name.rfind("model.layers.", 0) == 0 && name.size() > suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Output features of a linear layer of the pair's model (hidden 128, kv width 32, intermediate 256).
int out_features(const std::string& name) {
  if (name.find("down_proj") != std::string::npos) return 128;
  if (name.find("k_proj") != std::string::npos || name.find("v_proj") != std::string::npos) return 32;
  return name.find("mlp") != std::string::npos ? 256 : 128;
}

TensorToWrite dense_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                           const std::vector<float>& values) {
  TensorToWrite t{name, dtype, std::move(shape), {}};
  t.data.resize(values.size() * dtype_size(dtype));
  for (size_t k = 0; k < values.size(); ++k) {
    if (dtype == DType::F32) {
      std::memcpy(t.data.data() + 4 * k, &values[k], 4);
    } else {
      const uint16_t bits = dtype == DType::F16 ? f32_to_f16(values[k]) : f32_to_bf16(values[k]);
      std::memcpy(t.data.data() + 2 * k, &bits, 2);
    }
  }
  return t;
}

void write_folder(const std::filesystem::path& dir, const std::filesystem::path& base, const nlohmann::json& config,
                  const std::vector<TensorToWrite>& tensors) {
  std::filesystem::create_directories(dir);
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    std::filesystem::copy_file(base / file, dir / file);
  }
  std::ofstream(dir / "config.json") << config.dump(2);
  write_safetensors(dir / "model.safetensors", tensors);
}

// A tiny Llama 3.1 written twice: `quantized` in the layout of `method`, `dense` with the weights that
// layout stands for. FP8 quantizes the MLP only and keeps layer 1's down_proj dense, as Meta's
// checkpoints keep attention and some MLP layers in bf16.
struct FolderPair {
  testing::TempDir tmp{"llama31-quantized"};
  std::filesystem::path quantized, dense;
};

void write_pair(FolderPair& pair, const std::string& method) {
  TestModelSpec spec;
  spec.hidden_size = 128;
  spec.intermediate_size = 256;
  spec.num_attention_heads = 8;
  spec.num_key_value_heads = 2;
  spec.head_dim = 16;
  spec.vocab_size = 1000;
  const std::filesystem::path base = pair.tmp.path() / "base";
  const TestModelWeights weights = write_test_model(base, spec);
  std::mt19937 rng(99);
  std::vector<TensorToWrite> quantized, dense;
  QuantizationConfig quant;
  quant.method = method == "awq" ? QuantMethod::Awq : method == "gptq" ? QuantMethod::Gptq : QuantMethod::FbgemmFp8;
  quant.desc_act = method == "gptq";
  if (quant.method == QuantMethod::FbgemmFp8) {
    quant.bits = 8;
    quant.modules_to_not_convert = {"self_attn", "model.layers.1.mlp.down_proj", "lm_head"};
  }
  for (const auto& [name, values] : weights.tensors) {
    const std::string module = name.substr(0, name.size() - std::string(".weight").size());
    const int out = is_linear(name) ? out_features(name) : 0;
    const int in = is_linear(name) ? static_cast<int>(values.size()) / out : 0;
    if (!is_linear(name) || quant.keeps_unquantized(module)) {
      std::vector<int64_t> shape = {static_cast<int64_t>(values.size())};  // norms
      if (name == "model.embed_tokens.weight" || name == "lm_head.weight") shape = {spec.vocab_size, spec.hidden_size};
      if (is_linear(name)) shape = {out, in};
      quantized.push_back(dense_tensor(name, spec.dtype, shape, values));
      dense.push_back(dense_tensor(name, spec.dtype, shape, values));
      continue;
    }
    testing::QuantizedLinear layer;
    if (quant.method == QuantMethod::Awq) {
      layer = testing::random_awq_linear(module, out, in, 128, rng, 0.004f, 0.012f);
    } else if (quant.method == QuantMethod::Gptq) {
      layer = testing::random_gptq_linear(module, out, in, 128, true, true, rng, 0.004f, 0.012f);
    } else {
      layer = testing::random_fp8_linear(module, out, in, DType::BF16, rng, 0.0001f, 0.0003f);
    }
    for (auto& t : layer.tensors) quantized.push_back(std::move(t));
    dense.push_back(dense_tensor(name, layer.dense_dtype, {out, in}, layer.dense));
  }
  nlohmann::json config = weights.config.to_json();
  pair.dense = pair.tmp.path() / "dense";
  write_folder(pair.dense, base, config, dense);
  config["quantization_config"] = quant.to_json();
  pair.quantized = pair.tmp.path() / method;
  write_folder(pair.quantized, base, config, quantized);
}

const std::vector<TokenId> kCheckpointTokens = {1, 17, 256, 999, 3, 42, 7, 511, 12};

std::vector<float> logits_of(const ModelFolder& folder) {
  return testing::logits_of_every_position(LlamaModel(folder), kCheckpointTokens, /*one_at_a_time=*/false);
}

std::vector<float> logits_token_by_token(const ModelFolder& folder) {
  return testing::logits_of_every_position(LlamaModel(folder), kCheckpointTokens, /*one_at_a_time=*/true);
}

// Opened to run, the int4 layers are Q4_0 rows plus their zero points' offsets (act-order: with the input
// order beside them): half a byte a weight plus a scale per 32, and logits within the int8 rounding of
// the activations (as llama.cpp's Q4_0 kernels round them) of the dense weights', on the prefill and the
// decode kernels.
void expect_int4_runs_as_q4_0_close_to_dense(const FolderPair& pair, bool act_order) {
  const ModelFolder quantized = ModelFolder::open(pair.quantized);
  const ModelFolder dense = ModelFolder::open(pair.dense);
  const std::string module = "model.layers.1.mlp.down_proj";
  EXPECT_EQ(quantized.weights.get(module + ".weight").dtype, DType::Q4_0);
  EXPECT_NE(quantized.weights.find(module + ".weight_group_offsets"), nullptr);
  EXPECT_EQ(quantized.weights.find(module + ".weight_input_order") != nullptr, act_order);
  const size_t q4_bytes = LlamaModel(quantized).bytes_read_per_token();
  EXPECT_LT(static_cast<double>(q4_bytes), 0.8 * static_cast<double>(LlamaModel(dense).bytes_read_per_token()));
  const std::vector<float> reference = logits_of(dense);
  const std::vector<float> prefill = logits_of(quantized), decode = logits_token_by_token(quantized);
  ASSERT_EQ(prefill.size(), reference.size());
  ASSERT_EQ(decode.size(), reference.size());
  EXPECT_GT(relative_rms(prefill, reference), 0.0);
  EXPECT_LT(relative_rms(prefill, reference), 0.01);  // 0.3% when written
  EXPECT_LT(relative_rms(decode, reference), 0.01);
}

TEST(QuantizedCheckpoint, AwqRunsExactlyAsItsDenseWeights) {
  FolderPair pair;
  write_pair(pair, "awq");
  const ModelFolder quantized = ModelFolder::open(pair.quantized, QuantizedForm::Dense);
  const ModelFolder dense = ModelFolder::open(pair.dense);
  EXPECT_EQ(quantized.weights.get("model.layers.1.mlp.down_proj.weight").dtype, DType::F16);
  EXPECT_TRUE(quantized.fp8_activation_modules.empty());
  EXPECT_EQ(logits_of(quantized), logits_of(dense));
  expect_int4_runs_as_q4_0_close_to_dense(pair, /*act_order=*/false);
}

TEST(QuantizedCheckpoint, GptqWithActOrderRunsExactlyAsItsDenseWeights) {
  FolderPair pair;
  write_pair(pair, "gptq");
  const ModelFolder quantized = ModelFolder::open(pair.quantized, QuantizedForm::Dense);
  EXPECT_TRUE(quantized.config.quantization && quantized.config.quantization->desc_act);
  EXPECT_EQ(logits_of(quantized), logits_of(ModelFolder::open(pair.dense)));
  expect_int4_runs_as_q4_0_close_to_dense(pair, /*act_order=*/true);
}

TEST(QuantizedCheckpoint, Fp8DequantizesItsWeightsAndQuantizesActivationsPerToken) {
  FolderPair pair;
  write_pair(pair, "fp8");
  const ModelFolder quantized = ModelFolder::open(pair.quantized, QuantizedForm::Dense);
  const ModelFolder dense = ModelFolder::open(pair.dense);
  // Dense, the FP8 layers hold exactly the dense weights; attention and layer 1's down_proj stayed bf16.
  const std::set<std::string> expected = {"model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj",
                                          "model.layers.0.mlp.down_proj", "model.layers.1.mlp.gate_proj",
                                          "model.layers.1.mlp.up_proj"};
  EXPECT_EQ(quantized.fp8_activation_modules, expected);
  for (const std::string& module : expected) {
    const TensorView& a = quantized.weights.get(module + ".weight");
    const TensorView& b = dense.weights.get(module + ".weight");
    ASSERT_EQ(a.nbytes, b.nbytes);
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << module;
  }
  // Activations go through e4m3 per token: close to the dense run, not equal to it.
  const std::vector<float> q = logits_of(quantized), d = logits_of(dense);
  ASSERT_EQ(q.size(), d.size());
  double max_diff = 0, max_abs = 0;
  for (size_t k = 0; k < q.size(); ++k) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(q[k]) - d[k]));
    max_abs = std::max(max_abs, std::fabs(static_cast<double>(d[k])));
  }
  EXPECT_GT(max_diff, 0.0);
  EXPECT_LT(max_diff, 0.1 * max_abs) << "max |logit| " << max_abs;
}

// The float weights an FP8 folder opened to run stands for: each e4m3 layer as F32 e4m3 * scale (exact in
// fp32), its scale tensor gone; the activations are still quantized per token as the FP8 run does.
ModelFolder fp8_as_float_weights(const std::filesystem::path& dir) {
  ModelFolder folder = ModelFolder::open(dir);
  for (const std::string& module : folder.fp8_activation_modules) {
    const TensorView& weight = folder.weights.get(module + ".weight");
    const std::vector<float> scale = folder.weights.get(module + ".weight_scale").values();
    std::vector<float> values = weight.values();
    const size_t in = static_cast<size_t>(weight.shape[1]);
    for (size_t k = 0; k < values.size(); ++k) values[k] *= scale[k / in];
    std::vector<std::byte> bytes(values.size() * sizeof(float));
    std::memcpy(bytes.data(), values.data(), bytes.size());
    folder.weights.add_owned(weight.name, DType::F32, weight.shape, std::move(bytes));
    folder.weights.remove(module + ".weight_scale");
  }
  return folder;
}

TEST(QuantizedCheckpoint, Fp8RunsOnItsE4m3BytesAsTheFloatWeightsTheyStandFor) {
  FolderPair pair;
  write_pair(pair, "fp8");
  const ModelFolder fp8 = ModelFolder::open(pair.quantized);
  const ModelFolder reference = fp8_as_float_weights(pair.quantized);
  const ModelFolder widened = ModelFolder::open(pair.quantized, QuantizedForm::Dense);
  // One byte a weight as stored, with an f32 scale per output channel; the unquantized layers as they were.
  size_t saved = 0;
  for (const std::string& module : fp8.fp8_activation_modules) {
    const TensorView& weight = fp8.weights.get(module + ".weight");
    EXPECT_EQ(weight.dtype, DType::F8_E4M3) << module;
    const TensorView& scale = fp8.weights.get(module + ".weight_scale");
    EXPECT_EQ(scale.dtype, DType::F32);
    EXPECT_EQ(scale.shape, std::vector<int64_t>{weight.shape[0]});
    saved += static_cast<size_t>(weight.numel()) - scale.nbytes;  // bf16's 2 bytes a weight against 1 + scales
  }
  EXPECT_EQ(fp8.weights.get("model.layers.1.mlp.down_proj.weight").dtype, DType::BF16);
  EXPECT_EQ(LlamaModel(fp8).bytes_read_per_token() + saved, LlamaModel(widened).bytes_read_per_token());
  // The same numbers but for the order of the fp32 sums (and, rarely, an activation rounded to the
  // neighbouring e4m3 value after that), on the prefill and the decode kernels.
  const std::vector<float> expected = logits_of(reference);
  const std::vector<float> prefill = logits_of(fp8), decode = logits_token_by_token(fp8);
  ASSERT_EQ(prefill.size(), expected.size());
  ASSERT_EQ(decode.size(), expected.size());
  EXPECT_LT(relative_rms(prefill, expected), 1e-4);
  EXPECT_LT(relative_rms(decode, expected), 1e-4);
  EXPECT_EQ(logits_token_by_token(reference).size(), expected.size());
}

TEST(QuantizedCheckpoint, Fp8HeldAsE4m3ReStoresAsQ8_0OfTheScaledWeights) {
  FolderPair pair;
  write_pair(pair, "fp8");
  ModelFolder fp8 = ModelFolder::open(pair.quantized);
  ModelFolder reference = fp8_as_float_weights(pair.quantized);
  quantize_weights_in_memory(fp8.weights, fp8.config, DType::Q8_0, /*show_progress=*/false);
  quantize_weights_in_memory(reference.weights, reference.config, DType::Q8_0, /*show_progress=*/false);
  for (const std::string& module : fp8.fp8_activation_modules) {
    const TensorView& a = fp8.weights.get(module + ".weight");
    const TensorView& b = reference.weights.get(module + ".weight");
    EXPECT_EQ(a.dtype, DType::Q8_0);
    ASSERT_EQ(a.nbytes, b.nbytes);
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << module;
    EXPECT_EQ(fp8.weights.find(module + ".weight_scale"), nullptr) << module;  // applied, so gone
  }
  EXPECT_EQ(logits_of(fp8), logits_of(reference));
}

TEST(Q8_0Weights, ReStoredAtLoadTheyRunCloseToTheCheckpointOnHalfTheBytes) {
  testing::TempDir dir("llama31-q8");
  write_test_model(dir.path());
  const auto stored = LoadedModel::load(dir.path());
  const auto q8 = LoadedModel::load(dir.path(), /*prefault=*/false, DType::Q8_0);
  for (const char* name : {"model.layers.1.mlp.up_proj.weight", "lm_head.weight"}) {
    const TensorView& w = q8->folder().weights.get(name);  // Q8_0, repacked where the kernels want it so
    EXPECT_EQ(w.dtype, kernels::packed_weight_type(DType::Q8_0, w.shape[0], w.shape[1])) << name;
  }
  EXPECT_EQ(q8->folder().weights.get("model.embed_tokens.weight").dtype, DType::Q8_0);  // as llama.cpp's Q8_0
  // bf16 is 2 bytes a weight, Q8_0 34 bytes per 32; the norms stay fp32.
  EXPECT_LT(static_cast<double>(q8->model().bytes_read_per_token()),
            0.56 * static_cast<double>(stored->model().bytes_read_per_token()));
  const std::vector<float> reference = testing::logits_of_every_position(stored->model(), kCheckpointTokens, false);
  for (const bool one_at_a_time : {false, true}) {  // the prefill and the decode kernels
    const std::vector<float> q = testing::logits_of_every_position(q8->model(), kCheckpointTokens, one_at_a_time);
    ASSERT_EQ(q.size(), reference.size());
    EXPECT_GT(relative_rms(q, reference), 0.0);
    EXPECT_LT(relative_rms(q, reference), 0.02) << (one_at_a_time ? "decode" : "prefill");
  }
}

TEST(FakeQuantizeFp8, RowsKeepTheirLargestValueAndClampAtTheBound) {
  std::vector<float> x = {1.0f, -0.3f, 0.01f, 2.0f, 100.0f, -50.0f, 0.5f, 3.0f};
  fake_quantize_fp8_rows(x.data(), 2, 4, 20.0f);
  EXPECT_EQ(x[3], 2.0f);  // the row maximum maps to 448 exactly
  EXPECT_NEAR(x[1], -0.3f, 0.3f / 16);
  EXPECT_FLOAT_EQ(x[4], 20.0f);   // beyond the upper bound: saturates at it
  EXPECT_FLOAT_EQ(x[5], -20.0f);
  EXPECT_NEAR(x[7], 3.0f, 3.0f / 16);
}

TEST(QuantizedCheckpoint, MissingOrBrokenQuantizedTensorsFailNamingThem) {
  FolderPair pair;
  write_pair(pair, "awq");
  // Drop one layer's zeros.
  SafetensorsFile file(pair.quantized / "model.safetensors");
  std::vector<TensorToWrite> kept;
  for (const auto& [name, view] : file.tensors()) {
    if (name == "model.layers.0.mlp.up_proj.qzeros") continue;
    TensorToWrite t{name, view.dtype, view.shape, {}};
    t.data.assign(reinterpret_cast<const uint8_t*>(view.data), reinterpret_cast<const uint8_t*>(view.data) + view.nbytes);
    kept.push_back(std::move(t));
  }
  const std::filesystem::path broken = pair.tmp.path() / "broken";
  write_folder(broken, pair.quantized, nlohmann::json::parse(std::ifstream(pair.quantized / "config.json")), kept);
  try {
    ModelFolder::open(broken);
    FAIL() << "a missing qzeros tensor must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.mlp.up_proj.qzeros"), std::string::npos) << e.what();
  }
  // Without quantization_config, the packed tensors are not mistaken for weights.
  nlohmann::json config = nlohmann::json::parse(std::ifstream(pair.quantized / "config.json"));
  config.erase("quantization_config");
  std::ofstream(pair.quantized / "config.json") << config.dump();
  try {
    ModelFolder::open(pair.quantized);
    FAIL() << "packed tensors without quantization_config must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor model.layers.0.self_attn.q_proj.weight"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace llama31
