// A Q4_K_M GGUF file (the exporter behind `llama31 convert --type q4_k_m`, from a tiny test model whose rows
// are whole super-blocks of 256) runs its Q4_K and Q6_K tensors on the K-quant kernels as stored: the weight
// bytes per token are the file's, and the logits stay close to those of the same file with every matrix
// re-stored as Q8_0 of its exact values (--weights q8_0, what the loader did with K-quant tensors before
// they had kernels), on the prefill and on the decode kernels alike, and as close to the unquantized
// model's as those are.
//
// Tolerances, from this model's numbers: native against Q8_0-re-stored 0.024 relative RMS (re-storing the
// unquantized model as Q8_0 alone moves its logits by 0.017: this tiny random model's logits are peaked
// and sensitive); both 0.156 from the unquantized model (the 4-bit weights). Prefill against decode 0.0011:
// their fp32 sums differ in order, and where an activation lies within that rounding of a half step of the
// next layer's int8 quantization it rounds the other way (here once, at one position).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engine/generator.h"
#include "kernels/kernels.h"
#include "engine/llama_model.h"
#include "logits_test_support.h"
#include "model_files/gguf_writer.h"
#include "model_files/test_model.h"
#include "support/numeric.h"
#include "support/temp_dir.h"
#include "util/progress.h"

namespace llama31 {
namespace {

using testing::relative_rms;

const std::vector<TokenId> kKQuantTokens = {128000, 791, 4062, 14198, 39935, 35308, 927, 279, 16053, 5679, 11, 1578};

struct Q4KMFile {
  testing::TempDir dir{"llama31-kquant-model"};
  std::filesystem::path folder, gguf;
};

// Untied, so the embedding (Q4_K) and the head (Q6_K) are separate tensors; two layers, so llama-quantize's
// rule gives layer 1's attn_v and ffn_down Q6_K and layer 0's Q4_K.
const Q4KMFile& q4_k_m_file() {
  static const auto file = [] {
    Progress::set_enabled(false);
    auto f = std::make_unique<Q4KMFile>();
    TestModelSpec spec;
    spec.hidden_size = 256;
    spec.intermediate_size = 512;
    spec.num_attention_heads = 8;
    spec.num_key_value_heads = 2;
    spec.head_dim = 32;
    spec.dtype = DType::BF16;
    f->folder = f->dir.path() / "model";
    f->gguf = f->dir.path() / "model.gguf";
    write_test_model(f->folder, spec);
    GgufExportOptions options;
    options.type = GgufFileType::Q4_K_M;
    export_gguf(ModelFolder::open(f->folder), f->gguf, options);
    return f;
  }();
  return *file;
}

TEST(KQuantModel, TensorsRunAsStoredAndReadFewerBytes) {
  const auto native = LoadedModel::load(q4_k_m_file().gguf);
  const auto q8 = LoadedModel::load(q4_k_m_file().gguf, /*prefault=*/false, DType::Q8_0);
  const TensorStore& w = native->folder().weights;
  EXPECT_EQ(w.get("model.layers.0.self_attn.q_proj.weight").dtype, DType::Q4_K);
  EXPECT_EQ(w.get("model.layers.0.mlp.down_proj.weight").dtype, DType::Q4_K);
  EXPECT_EQ(w.get("model.layers.1.mlp.down_proj.weight").dtype, DType::Q6_K);
  EXPECT_EQ(w.get("model.layers.1.self_attn.v_proj.weight").dtype, DType::Q6_K);
  EXPECT_EQ(w.get("model.embed_tokens.weight").dtype, DType::Q4_K);
  EXPECT_EQ(w.get("lm_head.weight").dtype, DType::Q6_K);
  const TensorView& q8_head = q8->folder().weights.get("lm_head.weight");  // repacked where the kernels want
  EXPECT_EQ(q8_head.dtype, kernels::packed_weight_type(DType::Q8_0, q8_head.shape[0], q8_head.shape[1]));
  // 4.5 and 6.56 bits a weight against 8.5.
  EXPECT_LT(static_cast<double>(native->model().bytes_read_per_token()),
            0.85 * static_cast<double>(q8->model().bytes_read_per_token()));
}

TEST(KQuantModel, LogitsAreCloseToTheQ8_0ReStoredFileOnBothKernels) {
  const auto native = LoadedModel::load(q4_k_m_file().gguf);
  const auto q8 = LoadedModel::load(q4_k_m_file().gguf, /*prefault=*/false, DType::Q8_0);
  const auto unquantized = LoadedModel::load(q4_k_m_file().folder);
  for (bool one_at_a_time : {false, true}) {
    const char* kernels = one_at_a_time ? "decode" : "prefill";
    const std::vector<float> a = testing::logits_of_every_position(native->model(), kKQuantTokens, one_at_a_time);
    const std::vector<float> b = testing::logits_of_every_position(q8->model(), kKQuantTokens, one_at_a_time);
    const std::vector<float> f = testing::logits_of_every_position(unquantized->model(), kKQuantTokens, one_at_a_time);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_LT(relative_rms(a, b), 0.04) << kernels;
    EXPECT_LT(relative_rms(a, f), 1.05 * relative_rms(b, f)) << kernels;
  }
  const std::vector<float> prefill = testing::logits_of_every_position(native->model(), kKQuantTokens, false);
  const std::vector<float> decode = testing::logits_of_every_position(native->model(), kKQuantTokens, true);
  EXPECT_LT(relative_rms(decode, prefill), 0.01);
}

TEST(KQuantModel, GreedyTokensMatchTheQ8_0ReStoredFile) {
  const auto native = LoadedModel::load(q4_k_m_file().gguf);
  const auto q8 = LoadedModel::load(q4_k_m_file().gguf, /*prefault=*/false, DType::Q8_0);
  GenerationRequest request;
  request.prompt = kKQuantTokens;
  request.max_new_tokens = 8;
  request.sampling.temperature = 0;
  KvCache cache_a(native->config(), 64), cache_b(q8->config(), 64);
  const std::vector<TokenId> a = generate(*native, cache_a, request).tokens;
  const std::vector<TokenId> b = generate(*q8, cache_b, request).tokens;
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a.front(), b.front());  // later tokens may part at a near-tie
}

}  // namespace
}  // namespace llama31
