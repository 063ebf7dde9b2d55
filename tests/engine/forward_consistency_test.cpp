// The forward pass: batched prefill and one-token-at-a-time decoding agree, chunking is invisible,
// and bad inputs are refused with a clear error.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/generator.h"
#include "model_files/test_model.h"
#include "support/temp_dir.h"
#include "util/error.h"

namespace llama31 {
namespace {

class ForwardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("llama31-forward");
    write_test_model(dir_->path());
    model_ = LoadedModel::load(dir_->path()).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  static std::vector<TokenId> random_tokens(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<TokenId> dist(0, 128255);
    std::vector<TokenId> t(n);
    for (auto& x : t) x = dist(rng);
    return t;
  }
  static inline testing::TempDir* dir_ = nullptr;
  static inline LoadedModel* model_ = nullptr;
};

TEST_F(ForwardTest, BatchedPrefillMatchesTokenByTokenDecoding) {
  const auto tokens = random_tokens(40, 7);
  const LlamaModel& m = model_->model();
  const size_t vocab = static_cast<size_t>(m.vocab_size());

  KvCache batched_cache(m.config(), 64);
  std::vector<float> batched;
  m.forward(tokens, batched_cache, Logits::All, batched);
  ASSERT_EQ(batched.size(), tokens.size() * vocab);

  KvCache step_cache(m.config(), 64);
  std::vector<float> step;
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    m.forward(std::span(tokens).subspan(i, 1), step_cache, Logits::Last, step);
    for (size_t v = 0; v < vocab; ++v) {
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(step[v] - batched[i * vocab + v])));
      max_abs = std::max(max_abs, static_cast<double>(std::fabs(step[v])));
    }
  }
  EXPECT_LE(max_diff, 1e-4) << "largest logit " << max_abs;
  EXPECT_GT(max_abs, 0.5) << "logits look degenerate";
  EXPECT_EQ(step_cache.size(), static_cast<int>(tokens.size()));
}

TEST_F(ForwardTest, ChunkedPrefillMatchesOneCall) {
  // More positions than one internal chunk, then a continuation from a filled cache.
  const auto tokens = random_tokens(LlamaModel::max_chunk + 37, 11);
  const LlamaModel& m = model_->model();
  const size_t vocab = static_cast<size_t>(m.vocab_size());
  KvCache whole_cache(m.config(), 512);
  std::vector<float> whole;
  m.forward(tokens, whole_cache, Logits::All, whole);

  KvCache split_cache(m.config(), 512);
  std::vector<float> first, second;
  const size_t cut = 100;
  m.forward(std::span(tokens).first(cut), split_cache, Logits::None, first);
  EXPECT_TRUE(first.empty());
  m.forward(std::span(tokens).subspan(cut), split_cache, Logits::All, second);
  ASSERT_EQ(second.size(), (tokens.size() - cut) * vocab);
  double max_diff = 0;
  for (size_t i = 0; i < second.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(second[i] - whole[cut * vocab + i])));
  }
  EXPECT_LE(max_diff, 1e-4);
}

TEST_F(ForwardTest, LastLogitsEqualTheLastRowOfAll) {
  const auto tokens = random_tokens(9, 3);
  const LlamaModel& m = model_->model();
  const size_t vocab = static_cast<size_t>(m.vocab_size());
  KvCache a(m.config(), 16), b(m.config(), 16);
  std::vector<float> all, last;
  m.forward(tokens, a, Logits::All, all);
  m.forward(tokens, b, Logits::Last, last);
  ASSERT_EQ(last.size(), vocab);
  // The head runs as a matrix-vector product for one row and as a matrix product for nine:
  // the summation order differs, the values must not.
  for (size_t v = 0; v < vocab; ++v) ASSERT_NEAR(last[v], all[8 * vocab + v], 1e-4) << v;
}

TEST_F(ForwardTest, RefusesTokensOutsideTheVocabulary) {
  const LlamaModel& m = model_->model();
  KvCache cache(m.config(), 16);
  std::vector<float> logits;
  const std::vector<TokenId> bad{1, 128256};
  try {
    m.forward(bad, cache, Logits::Last, logits);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("128256"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cache.size(), 0) << "a refused input must not change the cache";
}

TEST_F(ForwardTest, RefusesInputsLongerThanTheContext) {
  const LlamaModel& m = model_->model();
  KvCache cache(m.config(), 8);
  std::vector<float> logits;
  const auto tokens = random_tokens(9, 5);
  try {
    m.forward(tokens, cache, Logits::Last, logits);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context"), std::string::npos) << e.what();
  }
}

TEST_F(ForwardTest, ContextCannotExceedTheModelLimit) {
  EXPECT_THROW(KvCache(model_->config(), model_->config().max_position_embeddings + 1), Error);
  EXPECT_THROW(KvCache(model_->config(), 0), Error);
}

}  // namespace
}  // namespace llama31
