#include "engine/distribution_compare.h"

#include <algorithm>
#include <cmath>

#include "engine/sampler.h"
#include "util/error.h"

namespace llama31 {

void DistributionComparer::add(std::span<const float> reference_logits, std::span<const float> logits,
                               std::optional<TokenId> next) {
  if (reference_logits.size() != logits.size() || logits.empty()) {
    fail("distribution comparison: vocabularies differ ({} and {} logits)", reference_logits.size(), logits.size());
  }
  const std::vector<double> p_log = log_softmax(reference_logits);
  const std::vector<double> q_log = log_softmax(logits);
  double kl = 0;
  for (size_t v = 0; v < p_log.size(); ++v) kl += std::exp(p_log[v]) * (p_log[v] - q_log[v]);
  kl_.push_back(std::max(kl, 0.0));  // rounding can leave -1e-17 for identical distributions
  const auto argmax = [](const std::vector<double>& x) { return std::max_element(x.begin(), x.end()) - x.begin(); };
  if (argmax(p_log) == argmax(q_log)) ++agree_;
  if (next) {
    if (*next < 0 || static_cast<size_t>(*next) >= logits.size()) fail("distribution comparison: token {} outside the vocabulary", *next);
    const size_t t = static_cast<size_t>(*next);
    reference_nll_ -= p_log[t];
    nll_ -= q_log[t];
    const double delta = std::exp(q_log[t]) - std::exp(p_log[t]);
    prob_delta_sq_ += delta * delta;
    ++scored_;
  }
}

DistributionComparison DistributionComparer::result() const {
  DistributionComparison r;
  r.positions = static_cast<int>(kl_.size());
  if (kl_.empty()) return r;
  std::vector<double> sorted = kl_;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (const double k : sorted) sum += k;
  const auto at = [&](double fraction) {
    return sorted[std::min(sorted.size() - 1, static_cast<size_t>(fraction * static_cast<double>(sorted.size() - 1) + 0.5))];
  };
  r.mean_kl = sum / static_cast<double>(sorted.size());
  r.median_kl = at(0.5);
  r.p99_kl = at(0.99);
  r.max_kl = sorted.back();
  r.top1_agreement = static_cast<double>(agree_) / static_cast<double>(sorted.size());
  if (scored_ > 0) {
    r.reference_perplexity = std::exp(reference_nll_ / scored_);
    r.perplexity = std::exp(nll_ / scored_);
    r.rms_prob_delta = std::sqrt(prob_delta_sq_ / scored_);
  }
  return r;
}

}  // namespace llama31
