#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "util/error.h"

namespace llama31 {

SamplingParams SamplingParams::from_generation_config(const GenerationConfig& g) {
  SamplingParams p;
  if (g.temperature) p.temperature = *g.temperature;
  if (g.top_p) p.top_p = *g.top_p;
  if (g.top_k) p.top_k = *g.top_k;
  if (g.repetition_penalty) p.repetition_penalty = *g.repetition_penalty;
  if (g.do_sample && !*g.do_sample) p.temperature = 0.0;
  return p;
}

void SamplingParams::validate() const {
  if (!(temperature >= 0.0) || !std::isfinite(temperature)) fail("temperature must be >= 0, got {}", temperature);
  if (top_k < 0) fail("top_k must be >= 0, got {}", top_k);
  if (!(top_p > 0.0 && top_p <= 1.0)) fail("top_p must be in (0, 1], got {}", top_p);
  if (!(min_p >= 0.0 && min_p <= 1.0)) fail("min_p must be in [0, 1], got {}", min_p);
  if (!(repetition_penalty > 0.0) || !std::isfinite(repetition_penalty)) {
    fail("repetition_penalty must be > 0, got {}", repetition_penalty);
  }
  if (!std::isfinite(presence_penalty)) fail("presence_penalty must be finite");
  if (!std::isfinite(frequency_penalty)) fail("frequency_penalty must be finite");
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) { params_.validate(); }

void Sampler::apply_penalties(std::span<float> logits, std::span<const TokenId> history) const {
  const bool repetition = params_.repetition_penalty != 1.0;
  const bool additive = params_.presence_penalty != 0.0 || params_.frequency_penalty != 0.0;
  if (!repetition && !additive) return;
  std::unordered_map<TokenId, int> counts;
  for (TokenId t : history) {
    if (t >= 0 && static_cast<size_t>(t) < logits.size()) ++counts[t];
  }
  const auto rp = static_cast<float>(params_.repetition_penalty);
  for (const auto& [token, count] : counts) {
    float& l = logits[static_cast<size_t>(token)];
    if (repetition) l = l > 0 ? l / rp : l * rp;
    l -= static_cast<float>(params_.presence_penalty + params_.frequency_penalty * count);
  }
}

TokenId Sampler::sample(std::span<float> logits, std::span<const TokenId> history) {
  apply_penalties(logits, history);
  if (params_.temperature == 0.0) {
    return static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  // Candidates sorted by logit, best first; ties keep the lower id first so runs repeat exactly.
  const auto inv_t = static_cast<float>(1.0 / params_.temperature);
  candidates_.clear();
  candidates_.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) candidates_.emplace_back(logits[i] * inv_t, static_cast<TokenId>(i));
  auto better = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = static_cast<size_t>(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<long>(keep), candidates_.end(), better);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), better);
  }
  candidates_.resize(keep);

  std::vector<double> probs(keep);
  const double max_logit = candidates_[0].first;
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += probs[i] = std::exp(static_cast<double>(candidates_[i].first) - max_logit);
  for (double& p : probs) p /= total;

  // top-p: the smallest prefix whose mass reaches top_p (at least one token).
  if (params_.top_p < 1.0) {
    double mass = 0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      mass += probs[i];
      if (mass >= params_.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
  }
  // min-p: drop tokens whose probability is below min_p times the best one's.
  if (params_.min_p > 0.0) {
    const double floor = params_.min_p * probs[0];
    size_t cut = 1;
    while (cut < keep && probs[cut] >= floor) ++cut;
    keep = cut;
  }
  double kept_mass = 0;
  for (size_t i = 0; i < keep; ++i) kept_mass += probs[i];
  std::uniform_real_distribution<double> uniform(0.0, kept_mass);
  const double r = uniform(rng_);
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += probs[i];
    if (r < acc) return candidates_[i].second;
  }
  return candidates_[keep - 1].second;
}

std::vector<double> log_softmax(std::span<const float> logits) {
  std::vector<double> out(logits.size());
  double max_logit = -INFINITY;
  for (float l : logits) max_logit = std::max(max_logit, static_cast<double>(l));
  double total = 0;
  for (float l : logits) total += std::exp(static_cast<double>(l) - max_logit);
  const double log_total = max_logit + std::log(total);
  for (size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<double>(logits[i]) - log_total;
  return out;
}

}  // namespace llama31
