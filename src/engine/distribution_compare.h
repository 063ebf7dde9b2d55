// How far a model's next-token distributions are from a reference model's over the same text, as
// llama-perplexity's KL-divergence mode reports it: mean and 99th-percentile KL(reference || model),
// how often both pick the same most likely token, and both perplexities.
#pragma once

#include <optional>
#include <span>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace llama31 {

struct DistributionComparison {
  int positions = 0;
  double mean_kl = 0, median_kl = 0, p99_kl = 0, max_kl = 0;  // nats
  double top1_agreement = 0;  // fraction of positions whose argmax is the same
  double reference_perplexity = 0, perplexity = 0;  // over the positions with a next token
  double rms_prob_delta = 0;  // RMS over positions of p(next) - p_reference(next)
};

class DistributionComparer {
 public:
  // One position: both models' logits ([vocab]) and the token that follows there, if any.
  void add(std::span<const float> reference_logits, std::span<const float> logits, std::optional<TokenId> next);
  DistributionComparison result() const;

 private:
  std::vector<double> kl_;
  int agree_ = 0;
  int scored_ = 0;
  double reference_nll_ = 0, nll_ = 0, prob_delta_sq_ = 0;
};

}  // namespace llama31
