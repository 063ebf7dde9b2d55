// A GGUF file runs as the folder it was exported from: its tokenizer (from tokenizer.ggml.*) encodes as
// tokenizer.json does, and its logits match the folder's (F32: to float rounding of the rope factors;
// Q8_0: equal to the folder run with --weights q8_0, the same numbers in the same kernels).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/generator.h"
#include "engine/llama_model.h"
#include "model_files/gguf_writer.h"
#include "model_files/test_model.h"
#include "support/temp_dir.h"
#include "util/progress.h"

namespace llama31 {
namespace {

struct Exported {
  testing::TempDir dir{"llama31-gguf-model"};
  std::filesystem::path folder;
  std::filesystem::path gguf;
};

std::unique_ptr<Exported> export_model(GgufFileType type) {
  Progress::set_enabled(false);
  auto e = std::make_unique<Exported>();
  e->folder = e->dir.path() / "model";
  e->gguf = e->dir.path() / "model.gguf";
  TestModelSpec spec;
  spec.hidden_size = 128;
  spec.intermediate_size = 256;
  spec.num_attention_heads = 8;
  spec.num_key_value_heads = 2;
  spec.head_dim = 16;
  spec.dtype = DType::F32;
  write_test_model(e->folder, spec);
  GgufExportOptions options;
  options.type = type;
  export_gguf(ModelFolder::open(e->folder), e->gguf, options);
  return e;
}

std::vector<float> logits_of(const LoadedModel& loaded, const std::vector<TokenId>& tokens) {
  KvCache cache(loaded.config(), 64);
  std::vector<float> logits;
  loaded.model().forward(tokens, cache, Logits::All, logits);
  return logits;
}

TEST(GgufModel, TokenizerFromMetadataEncodesAsTokenizerJson) {
  const auto e = export_model(GgufFileType::Q8_0);
  const Tokenizer a = load_tokenizer(e->folder);
  const Tokenizer b = load_tokenizer(e->gguf);
  EXPECT_EQ(b.vocab_size(), a.vocab_size());
  EXPECT_EQ(b.bos_id(), a.bos_id());
  const std::vector<std::string> texts = {
      "Hello world! It's 2026, isn't it?",
      "  leading spaces\n\n\ttabs and 12345678 numbers",
      "Ünïcödé – 日本語のテキスト, emoji 🦙🦙 and العربية",
      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
      "def f(x):\n    return x ** 2  # comment\r\n",
  };
  for (const std::string& text : texts) {
    EXPECT_EQ(b.encode(text, false), a.encode(text, false)) << text;
    EXPECT_EQ(b.encode(text, true), a.encode(text, true)) << text;
  }
  EXPECT_EQ(b.decode(a.encode(texts[2], false)), texts[2]);
  for (TokenId id : {128000, 128009, 128255, 100}) EXPECT_EQ(b.is_special(id), a.is_special(id)) << id;
}

TEST(GgufModel, F32FileGivesTheFoldersLogitsAndGreedyTokens) {
  const auto e = export_model(GgufFileType::F32);
  const auto folder = LoadedModel::load(e->folder);
  const auto gguf = LoadedModel::load(e->gguf);
  EXPECT_EQ(gguf->bos_id(), folder->bos_id());
  EXPECT_EQ(gguf->stop_ids(), (std::vector<TokenId>{128001, 128008, 128009}));
  const std::vector<TokenId> tokens = folder->tokenizer().encode("The quick brown fox jumps over the lazy dog, again and again");
  const std::vector<float> a = logits_of(*folder, tokens);
  const std::vector<float> b = logits_of(*gguf, tokens);
  ASSERT_EQ(a.size(), b.size());
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(a[i] - b[i])));
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(a[i])));
  }
  // Only the rope frequencies differ (llama.cpp's f32 factors against transformers' double formula).
  EXPECT_LT(max_diff, 1e-4 * max_abs);
  EXPECT_GT(max_abs, 1.0);

  GenerationRequest request;
  request.prompt = tokens;
  request.max_new_tokens = 12;
  request.sampling.temperature = 0;
  KvCache cache_a(folder->config(), 64), cache_b(gguf->config(), 64);
  EXPECT_EQ(generate(*gguf, cache_b, request).tokens, generate(*folder, cache_a, request).tokens);
}

TEST(GgufModel, Q8_0FileRunsAsTheFolderQuantizedAtLoad) {
  const auto e = export_model(GgufFileType::Q8_0);
  const auto folder = LoadedModel::load(e->folder, false, DType::Q8_0);
  const auto gguf = LoadedModel::load(e->gguf);
  const std::vector<TokenId> tokens = {128000, 791, 4062, 14198, 39935, 35308, 927, 279, 16053, 5679};
  const std::vector<float> a = logits_of(*folder, tokens);
  const std::vector<float> b = logits_of(*gguf, tokens);
  ASSERT_EQ(a.size(), b.size());
  double max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, static_cast<double>(std::fabs(a[i] - b[i])));
  EXPECT_LT(max_diff, 1e-3);  // the same int8 weights; rope factors as above
}

}  // namespace
}  // namespace llama31
