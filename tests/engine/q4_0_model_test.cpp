// A model loaded with its weights re-stored as Q4_0 (--weights q4_0): every matrix becomes Q4_0, the
// weight bytes fall to 18 per 32 values, the logits stay close to the checkpoint's on both the prefill and
// the decode kernels, and they are exactly those of a checkpoint whose weights were rounded to their Q4_0
// values beforehand (re-quantizing Q4_0 values gives the same blocks back).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "engine/generator.h"
#include "engine/llama_model.h"
#include "kernels/kernels.h"
#include "logits_test_support.h"
#include "model_files/safetensors.h"
#include "model_files/test_model.h"
#include "support/numeric.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

using testing::relative_rms;

// fp32 weights (Q4_0 values are exact in them), rows of 2 blocks (hidden) and of 32 (down_proj: the decode
// kernel's whole groups of 16), the head tied to the embedding to keep the files small.
TestModelSpec spec_for_q4() {
  TestModelSpec spec;
  spec.intermediate_size = 1024;
  spec.tie_word_embeddings = true;
  spec.dtype = DType::F32;
  return spec;
}

const std::vector<TokenId> kQ4Tokens = {1, 17, 256, 999, 3, 42, 7, 511, 12};

std::vector<float> q4_logits(const LoadedModel& m, bool one_at_a_time) {
  return testing::logits_of_every_position(m.model(), kQ4Tokens, one_at_a_time);
}

// Copies the F32 folder `from` into `to` with every 2-D tensor replaced by the values of its Q4_0 rows.
void write_rounded_copy(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::filesystem::create_directories(to);
  for (const auto& entry : std::filesystem::directory_iterator(from)) {
    if (entry.path().filename() != "model.safetensors") std::filesystem::copy_file(entry.path(), to / entry.path().filename());
  }
  const SafetensorsFile file(from / "model.safetensors");
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, view] : file.tensors()) {
    ASSERT_EQ(view.dtype, DType::F32) << name;
    TensorToWrite t{name, view.dtype, view.shape, {}};
    t.data.assign(reinterpret_cast<const uint8_t*>(view.data), reinterpret_cast<const uint8_t*>(view.data) + view.nbytes);
    if (view.shape.size() == 2) {
      const size_t in = static_cast<size_t>(view.shape[1]);
      std::vector<uint8_t> row(row_bytes(DType::Q4_0, view.shape[1]));
      for (int64_t r = 0; r < view.shape[0]; ++r) {
        auto* values = reinterpret_cast<float*>(t.data.data()) + static_cast<size_t>(r) * in;
        quantize_row_q4_0(values, in, row.data());
        convert_to_f32(DType::Q4_0, row.data(), values, in);
      }
    }
    tensors.push_back(std::move(t));
  }
  write_safetensors(to / "model.safetensors", tensors);
}

TEST(Q4_0Weights, ReStoredAtLoadTheyRunCloseToTheCheckpointOnAQuarterOfTheBytes) {
  testing::TempDir dir("llama31-q4");
  write_test_model(dir.path(), spec_for_q4());
  const auto stored = LoadedModel::load(dir.path());
  const auto q4 = LoadedModel::load(dir.path(), /*prefault=*/false, DType::Q4_0);
  for (const char* name : {"model.layers.1.mlp.down_proj.weight", "model.layers.0.self_attn.k_proj.weight"}) {
    const TensorView& w = q4->folder().weights.get(name);  // Q4_0, or the same bytes repacked (AVX2)
    EXPECT_EQ(w.dtype, kernels::packed_weight_type(DType::Q4_0, w.shape[0], w.shape[1])) << name;
  }
  EXPECT_EQ(q4->folder().weights.get("model.embed_tokens.weight").dtype, DType::Q4_0);  // the tied head too
  // f32 is 4 bytes a weight, Q4_0 18 bytes per 32 (14%); the norms stay fp32.
  EXPECT_LT(static_cast<double>(q4->model().bytes_read_per_token()),
            0.15 * static_cast<double>(stored->model().bytes_read_per_token()));
  const std::vector<float> reference = q4_logits(*stored, false);
  for (const bool one_at_a_time : {false, true}) {  // the prefill and the decode kernels
    const std::vector<float> q = q4_logits(*q4, one_at_a_time);
    ASSERT_EQ(q.size(), reference.size());
    // 4 bits a weight: ~0.2 here, ten times Q8_0's error, far from unrelated logits (relative RMS ~1.4).
    const double error = relative_rms(q, reference);
    EXPECT_GT(error, 0.0);
    EXPECT_LT(error, 0.3) << (one_at_a_time ? "decode" : "prefill");
  }
}

TEST(Q4_0Weights, LogitsEqualThoseOfACheckpointRoundedToQ4_0Beforehand) {
  testing::TempDir dir("llama31-q4-rounded");
  write_test_model(dir.path() / "original", spec_for_q4());
  write_rounded_copy(dir.path() / "original", dir.path() / "rounded");
  const auto q4 = LoadedModel::load(dir.path() / "original", /*prefault=*/false, DType::Q4_0);
  const auto rounded_q4 = LoadedModel::load(dir.path() / "rounded", /*prefault=*/false, DType::Q4_0);
  const auto rounded_f32 = LoadedModel::load(dir.path() / "rounded");
  for (const bool one_at_a_time : {false, true}) {
    const std::vector<float> a = q4_logits(*q4, one_at_a_time);
    const std::vector<float> b = q4_logits(*rounded_q4, one_at_a_time);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << (one_at_a_time ? "decode" : "prefill");
    // The same weights in fp32 kernels: only the int8 rounding of the activations differs.
    EXPECT_LT(relative_rms(a, q4_logits(*rounded_f32, one_at_a_time)), 0.03);
  }
}

}  // namespace
}  // namespace llama31
