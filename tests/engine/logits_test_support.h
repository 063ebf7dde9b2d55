// Shared by the engine tests that compare weight forms: a model's logits for a prompt, computed either by
// the prefill kernels or by the decode kernels.
#pragma once

#include <span>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/llama_model.h"

namespace llama31::testing {

// Logits of every position of tokens: in one forward pass (the matrix-matrix kernels) or token by token
// (the matrix-vector kernels), [tokens][vocab] either way.
inline std::vector<float> logits_of_every_position(const LlamaModel& model, std::span<const TokenId> tokens,
                                                   bool one_at_a_time) {
  KvCache cache(model.config(), static_cast<int>(tokens.size()));
  std::vector<float> all, step;
  if (!one_at_a_time) {
    model.forward(tokens, cache, Logits::All, all);
    return all;
  }
  for (const TokenId& t : tokens) {
    model.forward(std::span<const TokenId>(&t, 1), cache, Logits::Last, step);
    all.insert(all.end(), step.begin(), step.end());
  }
  return all;
}

}  // namespace llama31::testing
