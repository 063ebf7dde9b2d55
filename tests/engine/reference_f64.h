// An independent float64 re-implementation of the Llama 3.1 forward pass, written from the formulas of
// Hugging Face transformers' modeling_llama (LlamaRMSNorm, LlamaRotaryEmbedding with the "llama3"
// frequency scaling, rotate_half, repeat_kv for grouped-query attention, eager causal attention scaled by
// head_dim^-0.5, LlamaMLP down(silu(gate(x)) * up(x)), lm_head or tied embeddings).
//
// It shares nothing with the engine: no kernels, no rope_inverse_frequencies, no tokenizer. It exists
// so tests can hold the engine to a reference whose only approximation is double precision.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "model_files/test_model.h"

namespace llama31::reference {

struct ReferenceOptions {
  // false: plain RoPE frequencies even when the config has llama3 rope_scaling. Only for showing that
  // a test is sensitive to the scaling.
  bool apply_rope_scaling = true;
};

// Per-layer key/value cache of one sequence, filled token by token.
struct ReferenceCache {
  int position = 0;                          // tokens seen so far
  std::vector<std::vector<double>> keys;     // [layer][position * kv_dim + ...], after RoPE
  std::vector<std::vector<double>> values;   // [layer][position * kv_dim + ...]
};

class ReferenceLlama {
 public:
  explicit ReferenceLlama(const TestModelWeights& weights, ReferenceOptions options = {});

  int vocab_size() const { return vocab_; }
  // The rotary inverse frequencies used (head_dim / 2 values), computed here from the config.
  const std::vector<double>& inverse_frequencies() const { return inv_freq_; }

  // Runs `tokens` through the decoder layers on top of `cache` and returns the final-normed hidden
  // states, tokens.size() rows of hidden_size values.
  std::vector<double> final_hidden_states(ReferenceCache& cache, std::span<const int> tokens) const;

  // log_softmax(lm_head(h)) for every row of `hidden` (rows of hidden_size values). `on_row(row,
  // logprobs)` is called once per row, in row order, on the calling thread; the span is only valid
  // during the call. Rows are computed in parallel blocks.
  void log_softmax_rows(std::span<const double> hidden,
                        const std::function<void(size_t row, std::span<const double> logprobs)>& on_row) const;

  // Log-softmax over the vocabulary at every position of `tokens`, streamed through `on_position`
  // (position order, calling thread). Use this for long sequences: the whole matrix can be gigabytes.
  void score(std::span<const int> tokens,
             const std::function<void(size_t position, std::span<const double> logprobs)>& on_position) const;

  // The whole [position][vocab] log-softmax matrix, for short sequences.
  std::vector<std::vector<double>> log_softmax(std::span<const int> tokens) const;

  // Greedy decoding: up to max_new_tokens argmax tokens after `prompt`. Generation ends after a token
  // in `stop_tokens`; that token is included in the result.
  std::vector<int> greedy(std::span<const int> prompt, int max_new_tokens, std::span<const int> stop_tokens) const;

 private:
  struct Layer {
    std::vector<double> input_norm, post_attention_norm;
    std::vector<double> q_proj, k_proj, v_proj, o_proj;  // [out][in], nn.Linear layout
    std::vector<double> gate_proj, up_proj, down_proj;
  };

  void decoder_layer(const Layer& layer, std::vector<double>& keys, std::vector<double>& values, int position,
                     std::vector<double>& x) const;
  void apply_rotary(double* head_vector, int position) const;

  int hidden_ = 0, intermediate_ = 0, heads_ = 0, kv_heads_ = 0, head_dim_ = 0, vocab_ = 0;
  double rms_eps_ = 1e-5;
  std::vector<double> inv_freq_;
  std::vector<float> embed_tokens_;   // [vocab][hidden]
  std::vector<double> lm_head_;       // [vocab][hidden] (the embeddings when tied)
  std::vector<double> final_norm_;
  std::vector<Layer> layers_;
};

// The llama3 ("Llama 3.1") rotary inverse frequencies as transformers' _compute_llama3_parameters
// defines them, computed independently of the library, in double. apply_scaling=false gives the plain
// 1 / theta^(2i/d) frequencies.
std::vector<double> llama3_inverse_frequencies(const LlamaConfig& config, bool apply_scaling);

}  // namespace llama31::reference
