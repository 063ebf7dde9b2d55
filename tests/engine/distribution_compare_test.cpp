// KL divergence, top-token agreement and perplexities of one model's distributions against another's.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/distribution_compare.h"
#include "util/error.h"

namespace llama31 {
namespace {

TEST(DistributionCompare, IdenticalDistributionsHaveNoDivergence) {
  DistributionComparer c;
  const std::vector<float> logits = {0.3f, -1.2f, 2.5f, 0.0f};
  c.add(logits, logits, 2);
  c.add(logits, logits, std::nullopt);
  const auto r = c.result();
  EXPECT_EQ(r.positions, 2);
  EXPECT_EQ(r.mean_kl, 0.0);
  EXPECT_EQ(r.top1_agreement, 1.0);
  EXPECT_DOUBLE_EQ(r.perplexity, r.reference_perplexity);
  EXPECT_EQ(r.rms_prob_delta, 0.0);
}

TEST(DistributionCompare, MatchesAHandComputedCase) {
  DistributionComparer c;
  // Reference p = (1/4, 3/4), model q = (1/2, 1/2); the next token is 1.
  c.add(std::vector<float>{0.0f, static_cast<float>(std::log(3.0))}, std::vector<float>{1.0f, 1.0f}, 1);
  const auto r = c.result();
  EXPECT_NEAR(r.mean_kl, 0.25 * std::log(0.25 / 0.5) + 0.75 * std::log(0.75 / 0.5), 1e-7);
  EXPECT_EQ(r.top1_agreement, 0.0);  // 1 against 0 (ties go to the first token)
  EXPECT_NEAR(r.reference_perplexity, 1 / 0.75, 1e-6);
  EXPECT_NEAR(r.perplexity, 2.0, 1e-6);
  EXPECT_NEAR(r.rms_prob_delta, 0.25, 1e-6);
}

TEST(DistributionCompare, PercentilesComeFromTheSortedDivergences) {
  DistributionComparer c;
  for (int i = 0; i < 100; ++i) {
    const float gap = 0.05f * static_cast<float>(i);
    c.add(std::vector<float>{0.0f, 0.0f}, std::vector<float>{gap, 0.0f}, std::nullopt);
  }
  const auto r = c.result();
  // 100 values: the 99th percentile is the second largest (rank 0.99 * 99 = 98.01, nearest 98).
  EXPECT_LT(r.p99_kl, r.max_kl);
  EXPECT_LT(r.median_kl, r.p99_kl);
  EXPECT_GT(r.mean_kl, r.median_kl);  // KL grows faster than the gap
  EXPECT_THROW(c.add(std::vector<float>{0.0f}, std::vector<float>{0.0f, 1.0f}, std::nullopt), Error);
}

}  // namespace
}  // namespace llama31
