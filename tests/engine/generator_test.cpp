// One request's life: stop tokens, stop strings (also split across tokens), token limits.
#include <gtest/gtest.h>

#include "engine/generator.h"
#include "model_files/test_model.h"
#include "support/temp_dir.h"
#include "util/error.h"

namespace llama31 {
namespace {

TEST(StopStringMatcher, HoldsBackPossiblePrefixesAndCutsAtTheStop) {
  StopStringMatcher m({"</end>"});
  EXPECT_EQ(m.push("Hello </"), "Hello ");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push("en"), "");
  EXPECT_EQ(m.push("d> trailing"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.flush(), "");
}

TEST(StopStringMatcher, ReleasesHeldTextThatTurnsOutNotToBeAStop) {
  StopStringMatcher m({"STOP"});
  EXPECT_EQ(m.push("abc ST"), "abc ");
  EXPECT_EQ(m.push("ART"), "START");
  EXPECT_EQ(m.push("S"), "");
  EXPECT_EQ(m.flush(), "S");
  EXPECT_FALSE(m.stopped());
}

TEST(StopStringMatcher, EarliestOfSeveralStopsWins) {
  StopStringMatcher m({"world", "lo w"});
  EXPECT_EQ(m.push("hello world"), "hel");
  EXPECT_TRUE(m.stopped());
}

class GeneratorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("llama31-generator");
    write_test_model(dir_->path());
    model_ = LoadedModel::load(dir_->path()).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  GenerationRequest greedy(int n) const {
    GenerationRequest r;
    r.prompt = {model_->bos_id()};
    const auto ids = model_->tokenizer().encode("The quick brown fox");
    r.prompt.insert(r.prompt.end(), ids.begin(), ids.end());
    r.max_new_tokens = n;
    r.sampling.temperature = 0;
    return r;
  }
  static inline testing::TempDir* dir_ = nullptr;
  static inline LoadedModel* model_ = nullptr;
};

TEST_F(GeneratorTest, StopIdsComeFromBothConfigs) {
  const auto& stops = model_->stop_ids();
  for (TokenId id : {128001, 128008, 128009}) {
    EXPECT_NE(std::find(stops.begin(), stops.end(), id), stops.end()) << id;
  }
  EXPECT_EQ(model_->bos_id(), 128000);
}

TEST_F(GeneratorTest, GreedyIsRepeatableAndStreamsTheSameText) {
  KvCache cache(model_->config(), 64);
  std::string streamed;
  const auto a = generate(*model_, cache, greedy(12), [&](std::string_view s) { streamed += s; });
  const auto b = generate(*model_, cache, greedy(12));
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.tokens.size(), 12u);
  EXPECT_EQ(a.finish, FinishReason::Length);
  EXPECT_EQ(streamed, a.text);
  EXPECT_EQ(a.text, model_->tokenizer().decode(a.tokens));
}

TEST_F(GeneratorTest, StopsOnAStopTokenWithoutPrintingIt) {
  KvCache cache(model_->config(), 64);
  auto request = greedy(12);
  const auto free_run = generate(*model_, cache, request);
  // Declare the 4th greedy token a stop token: generation must end there.
  request.stop_ids = {free_run.tokens[3]};
  const auto stopped = generate(*model_, cache, request);
  EXPECT_EQ(stopped.finish, FinishReason::Stop);
  ASSERT_EQ(stopped.tokens.size(), 4u);
  EXPECT_EQ(stopped.text, model_->tokenizer().decode(std::span(free_run.tokens).first(3)));
}

TEST_F(GeneratorTest, StopsAtAStopString) {
  KvCache cache(model_->config(), 64);
  auto request = greedy(12);
  const auto free_run = generate(*model_, cache, request);
  ASSERT_GE(free_run.text.size(), 4u);
  const std::string stop = free_run.text.substr(free_run.text.size() / 2, 2);
  request.stop_strings = {stop};
  const auto stopped = generate(*model_, cache, request);
  EXPECT_EQ(stopped.finish, FinishReason::Stop);
  EXPECT_EQ(stopped.text, free_run.text.substr(0, free_run.text.find(stop)));
}

TEST_F(GeneratorTest, EndsWhenTheContextIsFull) {
  auto request = greedy(50);
  KvCache cache(model_->config(), static_cast<int>(request.prompt.size()) + 3);
  const auto r = generate(*model_, cache, request);
  EXPECT_EQ(r.finish, FinishReason::ContextFull);
  EXPECT_EQ(r.tokens.size(), 4u);  // 3 positions left, plus the token sampled from the last logits
}

TEST_F(GeneratorTest, RefusesAPromptThatFillsTheContext) {
  auto request = greedy(5);
  KvCache cache(model_->config(), static_cast<int>(request.prompt.size()));
  EXPECT_THROW(generate(*model_, cache, request), Error);
}

}  // namespace
}  // namespace llama31
