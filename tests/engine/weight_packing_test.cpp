// Weights repacked at load for the kernels (engine/weight_packing.h): on AVX-512 a Q8_0 or Q4_0 model's
// linear layers and untied head become Q8_0_R16 or Q4_0_R16 panels holding the same bytes' worth, the
// embedding stays row-addressable, and the logits are those of the unpacked model: the prefill products
// bit for bit (the same panels and sums), the decode ones within fp32 rounding (a different summation
// order than the rows' decode kernel's). Elsewhere, or with repack off, nothing changes.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/generator.h"
#include "engine/llama_model.h"
#include "engine/weight_packing.h"
#include "kernels/kernels.h"
#include "logits_test_support.h"
#include "model_files/quantized_weights.h"
#include "model_files/test_model.h"
#include "support/numeric.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

using testing::relative_rms;

const std::vector<TokenId> kPackingTokens = {128000, 17, 256, 999, 3, 42, 7, 511, 12, 77, 5};

std::vector<float> packing_logits(const LoadedModel& m, bool one_at_a_time) {
  return testing::logits_of_every_position(m.model(), kPackingTokens, one_at_a_time);
}

bool packs_here(DType rows = DType::Q8_0) { return kernels::packed_weight_type(rows, 64, 64) != rows; }

class WeightPackingOf : public ::testing::TestWithParam<DType> {};

TEST_P(WeightPackingOf, LayersBecomePanelsAndKeepTheirLogits) {
  const DType rows = GetParam();
  testing::TempDir dir("llama31-packing");
  TestModelSpec spec;  // hidden 64, intermediate 192, untied head: every matrix is whole panels
  write_test_model(dir.path(), spec);
  const auto plain = LoadedModel::load(dir.path(), /*prefault=*/false, rows, /*repack=*/false);
  const auto packed = LoadedModel::load(dir.path(), /*prefault=*/false, rows, /*repack=*/true);
  const DType panels = rows == DType::Q8_0 ? DType::Q8_0_R16 : DType::Q4_0_R16;
  const DType expected = packs_here(rows) ? panels : rows;
  for (const char* name : {"model.layers.0.self_attn.k_proj.weight", "model.layers.1.mlp.down_proj.weight",
                           "lm_head.weight"}) {
    EXPECT_EQ(plain->folder().weights.get(name).dtype, rows) << name;
    EXPECT_EQ(packed->folder().weights.get(name).dtype, expected) << name;
  }
  EXPECT_EQ(packed->folder().weights.get("model.embed_tokens.weight").dtype, rows);  // rows looked up
  EXPECT_EQ(packed->folder().weights.total_bytes(), plain->folder().weights.total_bytes());
  EXPECT_EQ(packed->model().bytes_read_per_token(), plain->model().bytes_read_per_token());
  // The regions the bench sweeps for its bandwidth figure are the packed tensors' own bytes.
  const TensorView& down = packed->folder().weights.get("model.layers.1.mlp.down_proj.weight");
  const auto regions = packed->model().bytes_read_per_token_regions();
  EXPECT_EQ(std::count_if(regions.begin(), regions.end(),
                          [&](const auto& r) { return r.data() == down.data && r.size() == down.nbytes; }),
            1);

  const std::vector<float> reference = packing_logits(*plain, false);
  const std::vector<float> prefill = packing_logits(*packed, false);
  const std::vector<float> decode = packing_logits(*packed, true);
  ASSERT_EQ(prefill.size(), reference.size());
  // fp32 rounding of the decode-path sums (the logits rows always take it) and nothing else: a wrong
  // panel, scale or row would be of the order of the logits themselves (relative RMS ~1).
  EXPECT_LT(relative_rms(prefill, reference), 1e-5);
  EXPECT_LT(relative_rms(decode, packing_logits(*plain, true)), 1e-5);
  // Decode against prefill: fp32 differences between the two paths can flip the int8 rounding of an
  // activation, which moves the logits by more than rounding but far less than a wrong weight.
  EXPECT_LT(relative_rms(decode, reference), 0.05);
}

INSTANTIATE_TEST_SUITE_P(Types, WeightPackingOf, ::testing::Values(DType::Q8_0, DType::Q4_0),
                         [](const ::testing::TestParamInfo<DType>& type) { return std::string(dtype_name(type.param)); });

TEST(WeightPacking, PacksTheLinearLayersAndAnUntiedHeadOnly) {
  testing::TempDir dir("llama31-packing-count");
  TestModelSpec spec;
  spec.tie_word_embeddings = true;
  write_test_model(dir.path(), spec);
  // Q8_0 where this level repacks it (AVX-512, AVX2), else Q4_0 where it does.
  const DType rows = packs_here(DType::Q8_0) ? DType::Q8_0 : DType::Q4_0;
  ModelFolder folder = ModelFolder::open(dir.path());
  quantize_weights_in_memory(folder.weights, folder.config, rows, /*show_progress=*/false);
  const PackedWeights packed = pack_weights_for_kernels(folder.weights, folder.config, /*show_progress=*/false);
  if (!packs_here(rows)) {
    EXPECT_EQ(packed.tensors, 0);
    return;
  }
  EXPECT_EQ(packed.tensors, 7 * spec.num_hidden_layers);  // the head is the embedding: left as rows
  EXPECT_EQ(folder.weights.get("model.embed_tokens.weight").dtype, rows);
  size_t linear_bytes = 0;
  for (int l = 0; l < spec.num_hidden_layers; ++l) {
    for (const char* module : kLayerLinearModules) {
      const TensorView& w = folder.weights.get(layer_tensor_name(l, module) + ".weight");
      EXPECT_EQ(w.dtype, rows == DType::Q8_0 ? DType::Q8_0_R16 : DType::Q4_0_R16) << w.name;
      linear_bytes += w.nbytes;
    }
  }
  EXPECT_EQ(packed.bytes, linear_bytes);
  // Packing again finds nothing left to do.
  EXPECT_EQ(pack_weights_for_kernels(folder.weights, folder.config, false).tensors, 0);
}

TEST(WeightPacking, BfloatWeightsAreLeftAsTheyAre) {
  testing::TempDir dir("llama31-packing-bf16");
  write_test_model(dir.path(), TestModelSpec{});
  ModelFolder folder = ModelFolder::open(dir.path());
  EXPECT_EQ(pack_weights_for_kernels(folder.weights, folder.config, false).tensors, 0);
  EXPECT_EQ(folder.weights.get("model.layers.0.mlp.up_proj.weight").dtype, DType::BF16);
}

}  // namespace
}  // namespace llama31
