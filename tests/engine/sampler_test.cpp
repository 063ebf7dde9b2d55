// Sampling: greedy, seeds, top-k / top-p / min-p truncation, penalties, parameter checks.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "engine/sampler.h"
#include "util/error.h"

namespace llama31 {
namespace {

std::vector<float> example_logits() {
  // Distinct values so the order is unambiguous: token 3 best, then 0, 5, 1 ...
  return {2.0f, 0.5f, -1.0f, 3.0f, -2.0f, 1.5f, 0.0f, -0.5f};
}

std::map<TokenId, int> histogram(SamplingParams p, int draws) {
  std::map<TokenId, int> counts;
  Sampler s(p);
  for (int i = 0; i < draws; ++i) {
    auto l = example_logits();
    ++counts[s.sample(l, {})];
  }
  return counts;
}

TEST(Sampler, TemperatureZeroIsArgmax) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p);
  auto l = example_logits();
  EXPECT_EQ(s.sample(l, {}), 3);
}

TEST(Sampler, SameSeedSameSequenceDifferentSeedDiffers) {
  SamplingParams p;
  p.temperature = 1.5;
  p.seed = 99;
  auto draw = [](SamplingParams q) {
    Sampler s(q);
    std::vector<TokenId> out;
    for (int i = 0; i < 64; ++i) {
      auto l = example_logits();
      out.push_back(s.sample(l, {}));
    }
    return out;
  };
  EXPECT_EQ(draw(p), draw(p));
  SamplingParams other = p;
  other.seed = 100;
  EXPECT_NE(draw(p), draw(other));
}

TEST(Sampler, TopKKeepsOnlyTheKBest) {
  SamplingParams p;
  p.temperature = 5.0;  // flat, so every kept token shows up
  p.top_k = 2;
  const auto counts = histogram(p, 2000);
  EXPECT_EQ(std::set<TokenId>({3, 0}), [&] {
    std::set<TokenId> seen;
    for (auto& [t, c] : counts) seen.insert(t);
    return seen;
  }());
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingTheMass) {
  SamplingParams p;
  p.temperature = 1.0;
  p.top_p = 0.6;  // probs: 3 -> 0.562, 0 -> 0.207, ...: only {3, 0} together reach 0.6
  const auto counts = histogram(p, 3000);
  std::set<TokenId> seen;
  for (auto& [t, c] : counts) seen.insert(t);
  EXPECT_EQ(seen, std::set<TokenId>({3, 0}));
  // Renormalised over the kept two: 0.562 / 0.769 = 0.731 for token 3.
  EXPECT_NEAR(counts.at(3) / 3000.0, 0.731, 0.03);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  SamplingParams p;
  p.temperature = 1.0;
  p.min_p = 0.3;  // relative to token 3: token 0 has e^-1 = 0.37 (kept), token 5 e^-1.5 = 0.22 (dropped)
  const auto counts = histogram(p, 2000);
  std::set<TokenId> seen;
  for (auto& [t, c] : counts) seen.insert(t);
  EXPECT_EQ(seen, std::set<TokenId>({3, 0}));
}

TEST(Sampler, SampledFrequenciesFollowTheSoftmax) {
  SamplingParams p;
  p.temperature = 1.0;
  const int n = 20000;
  const auto counts = histogram(p, n);
  const auto logits = example_logits();
  const auto lp = log_softmax(logits);
  for (size_t t = 0; t < logits.size(); ++t) {
    const double expected = std::exp(lp[t]);
    const double got = counts.count(static_cast<TokenId>(t)) ? counts.at(static_cast<TokenId>(t)) / double(n) : 0.0;
    EXPECT_NEAR(got, expected, 0.015) << "token " << t;
  }
}

TEST(Sampler, RepetitionPenaltyDemotesSeenTokens) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0;  // token 3: 3.0 -> 1.5, below token 0 (2.0)
  Sampler s(p);
  auto l = example_logits();
  const std::vector<TokenId> history{3};
  EXPECT_EQ(s.sample(l, history), 0);
}

TEST(Sampler, PresenceAndFrequencyPenaltiesSubtract) {
  SamplingParams p;
  p.temperature = 0;
  p.frequency_penalty = 0.4;  // token 3 seen 3 times: 3.0 - 1.2 = 1.8 < 2.0
  Sampler s(p);
  auto l = example_logits();
  const std::vector<TokenId> history{3, 3, 3};
  EXPECT_EQ(s.sample(l, history), 0);
  EXPECT_FLOAT_EQ(l[3], 1.8f);

  SamplingParams q;
  q.temperature = 0;
  q.presence_penalty = 0.5;  // once regardless of count: 3.0 - 0.5 = 2.5 > 2.0
  Sampler s2(q);
  auto l2 = example_logits();
  EXPECT_EQ(s2.sample(l2, history), 3);
  EXPECT_FLOAT_EQ(l2[3], 2.5f);
}

TEST(Sampler, DefaultsComeFromGenerationConfig) {
  GenerationConfig g;
  g.do_sample = true;
  g.temperature = 0.6;
  g.top_p = 0.9;
  auto p = SamplingParams::from_generation_config(g);
  EXPECT_DOUBLE_EQ(p.temperature, 0.6);
  EXPECT_DOUBLE_EQ(p.top_p, 0.9);
  g.do_sample = false;
  EXPECT_DOUBLE_EQ(SamplingParams::from_generation_config(g).temperature, 0.0);
}

TEST(Sampler, InvalidParametersNameTheParameter) {
  auto message = [](SamplingParams p) {
    try {
      p.validate();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  SamplingParams p;
  p.temperature = -1;
  EXPECT_NE(message(p).find("temperature"), std::string::npos);
  p = {};
  p.top_p = 0;
  EXPECT_NE(message(p).find("top_p"), std::string::npos);
  p = {};
  p.min_p = 2;
  EXPECT_NE(message(p).find("min_p"), std::string::npos);
  p = {};
  p.top_k = -3;
  EXPECT_NE(message(p).find("top_k"), std::string::npos);
}

TEST(LogSoftmax, SumsToOneAndKeepsOrder) {
  const auto lp = log_softmax(example_logits());
  double total = 0;
  for (double x : lp) total += std::exp(x);
  EXPECT_NEAR(total, 1.0, 1e-12);
  EXPECT_GT(lp[3], lp[0]);
  EXPECT_NEAR(lp[3] - lp[0], 1.0, 1e-12);
}

}  // namespace
}  // namespace llama31
