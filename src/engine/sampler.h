// Picks the next token from logits: penalties, then temperature, top-k, top-p and min-p, as
// Hugging Face's logits processors apply them; greedy when temperature is 0.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "model_files/config.h"
#include "tokenizer/tokenizer.h"

namespace llama31 {

struct SamplingParams {
  double temperature = 1.0;  // 0: greedy (argmax)
  int top_k = 0;             // 0: off
  double top_p = 1.0;        // 1: off
  double min_p = 0.0;        // 0: off
  double repetition_penalty = 1.0;  // HF: logit / p if > 0 else logit * p, for tokens seen
  double presence_penalty = 0.0;    // OpenAI: minus this once for every token seen
  double frequency_penalty = 0.0;   // OpenAI: minus this times the token's count
  uint64_t seed = 0;

  // Llama 3.1's generation_config.json defaults (temperature 0.6, top_p 0.9), or greedy when the file
  // says do_sample false; values absent from the file keep the fields above.
  static SamplingParams from_generation_config(const GenerationConfig& g);
  // Errors name the parameter: temperature < 0, top_p outside (0, 1], min_p outside [0, 1] ...
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Chooses a token; history is the sequence so far (prompt and generated) for the penalties.
  // logits are modified in place.
  TokenId sample(std::span<float> logits, std::span<const TokenId> history);

 private:
  void apply_penalties(std::span<float> logits, std::span<const TokenId> history) const;

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, TokenId>> candidates_;
};

// log-softmax of one row of logits, in double for accuracy.
std::vector<double> log_softmax(std::span<const float> logits);

}  // namespace llama31
