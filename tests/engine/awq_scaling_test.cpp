// AWQ's activation-aware scaling: folding the scales leaves the model's function unchanged (logits equal
// to float rounding), and on a model whose activations have outlier channels (as real LLMs do) the int4
// round trip with the searched scales stays closer to the original than round to nearest alone.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/awq_scaling.h"
#include "engine/generator.h"
#include "engine/llama_model.h"
#include "model_files/quantized_weights.h"
#include "model_files/test_model.h"
#include "support/temp_dir.h"
#include "util/progress.h"

namespace llama31 {
namespace {

constexpr int kGroup = 128;

void store_f32(TensorStore& weights, const std::string& name, const std::vector<int64_t>& shape,
               const std::vector<float>& values) {
  std::vector<std::byte> bytes(values.size() * 4);
  std::memcpy(bytes.data(), values.data(), bytes.size());
  weights.add_owned(name, DType::F32, shape, std::move(bytes));
}

// A tiny F32 model whose normed activations have a few outlier channels (norm weights 12x on channels
// 0, 37, 101 and 200 of every layer), as the massive activations of real Llama models.
ModelFolder model_with_outliers(const std::filesystem::path& dir) {
  Progress::set_enabled(false);
  TestModelSpec spec;
  spec.hidden_size = 256;
  spec.intermediate_size = 512;
  spec.num_attention_heads = 8;
  spec.num_key_value_heads = 2;
  spec.head_dim = 32;
  spec.dtype = DType::F32;
  write_test_model(dir, spec);
  ModelFolder folder = ModelFolder::open(dir);
  for (int l = 0; l < folder.config.num_hidden_layers; ++l) {
    for (const char* norm : {"input_layernorm.weight", "post_attention_layernorm.weight"}) {
      const std::string name = layer_tensor_name(l, norm);
      const TensorView& view = folder.weights.get(name);
      std::vector<float> w = view.values();
      for (int channel : {0, 37, 101, 200}) w[static_cast<size_t>(channel)] *= 12.0f;
      store_f32(folder.weights, name, view.shape, w);
    }
  }
  return folder;
}

// Every linear layer replaced by its int4-g128 round trip (what a quantized checkpoint loads as).
void round_trip_linear_layers(ModelFolder& folder) {
  for (int l = 0; l < folder.config.num_hidden_layers; ++l) {
    for (const char* module : kLayerLinearModules) {
      const std::string name = layer_tensor_name(l, (std::string(module) + ".weight").c_str());
      const TensorView& view = folder.weights.get(name);
      const std::vector<int64_t> shape = view.shape;
      store_f32(folder.weights, name, shape,
                int4_round_trip(view.values(), static_cast<int>(shape[0]), static_cast<int>(shape[1]), kGroup));
    }
  }
}

std::vector<float> logits_of(const ModelFolder& folder, const std::vector<TokenId>& tokens) {
  LlamaModel model(folder);
  KvCache cache(model.config(), static_cast<int>(tokens.size()));
  std::vector<float> logits;
  model.forward(tokens, cache, Logits::All, logits);
  return logits;
}

// Mean KL(reference || other) of the next-token distributions.
double mean_kl(const std::vector<float>& reference, const std::vector<float>& other, int vocab) {
  double total = 0;
  const size_t rows = reference.size() / static_cast<size_t>(vocab);
  for (size_t r = 0; r < rows; ++r) {
    const float* a = reference.data() + r * vocab;
    const float* b = other.data() + r * vocab;
    double ma = a[0], mb = b[0];
    for (int i = 1; i < vocab; ++i) ma = std::max<double>(ma, a[i]), mb = std::max<double>(mb, b[i]);
    double za = 0, zb = 0;
    for (int i = 0; i < vocab; ++i) za += std::exp(a[i] - ma), zb += std::exp(b[i] - mb);
    double kl = 0;
    for (int i = 0; i < vocab; ++i) {
      const double la = a[i] - ma - std::log(za), lb = b[i] - mb - std::log(zb);
      kl += std::exp(la) * (la - lb);
    }
    total += kl;
  }
  return total / static_cast<double>(rows);
}

std::vector<TokenId> tokens_of(const ModelFolder& folder, const std::string& text) {
  std::vector<TokenId> ids = {128000};
  for (TokenId id : load_tokenizer(folder).encode(text)) ids.push_back(id);
  return ids;
}

const std::string kCalibration =
    "The quick brown fox jumps over the lazy dog. Large language models are trained on text from the web, "
    "books and code; quantizing their weights to four bits keeps most of their quality when the few "
    "channels with large activations are protected. Once upon a time there was a small village by the sea, "
    "where fishermen mended their nets every morning and told stories every night.";
const std::string kHeldOut =
    "In 1969 the first humans walked on the Moon. def add(a, b):\n    return a + b\nThe weather today is "
    "sunny with a light breeze from the west, and the market opens at nine.";

TEST(AwqScaling, FoldedScalesLeaveTheModelsFunctionUnchanged) {
  testing::TempDir dir("llama31-awq");
  ModelFolder folder = model_with_outliers(dir.path());
  const std::vector<TokenId> held_out = tokens_of(folder, kHeldOut);
  const std::vector<float> before = logits_of(folder, held_out);
  const AwqScalingReport report = apply_awq_scaling(folder, tokens_of(folder, kCalibration), {}, false);
  EXPECT_EQ(report.groups, 3 * folder.config.num_hidden_layers);
  EXPECT_GT(report.mean_alpha, 0.0) << "the outlier channels should call for scaling";
  const std::vector<float> after = logits_of(folder, held_out);
  ASSERT_EQ(before.size(), after.size());
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(before[i] - after[i])));
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(before[i])));
  }
  EXPECT_LT(max_diff, 1e-4 * max_abs);  // only float rounding of the scaled weights
}

TEST(AwqScaling, Int4WithTheSearchedScalesIsCloserToTheOriginalThanRoundToNearest) {
  testing::TempDir dir_a("llama31-awq"), dir_b("llama31-awq");
  ModelFolder rtn = model_with_outliers(dir_a.path());
  ModelFolder awq = model_with_outliers(dir_b.path());
  const std::vector<TokenId> held_out = tokens_of(rtn, kHeldOut);
  const std::vector<float> reference = logits_of(rtn, held_out);
  const AwqScalingReport report = apply_awq_scaling(awq, tokens_of(awq, kCalibration), {}, false);
  EXPECT_LT(report.error_scaled, 0.9 * report.error_round_to_nearest);
  round_trip_linear_layers(rtn);
  round_trip_linear_layers(awq);
  const int vocab = rtn.config.vocab_size;
  const double kl_rtn = mean_kl(reference, logits_of(rtn, held_out), vocab);
  const double kl_awq = mean_kl(reference, logits_of(awq, held_out), vocab);
  std::printf("[ awq ] held-out mean KL: round to nearest %.4f, activation-aware %.4f (mean alpha %.2f)\n", kl_rtn,
              kl_awq, report.mean_alpha);
  EXPECT_LT(kl_awq, 0.8 * kl_rtn);
}

}  // namespace
}  // namespace llama31
