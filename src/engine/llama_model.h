// The Llama 3.1 forward pass over weights kept in the mapped checkpoint.
//
// Reads top to bottom like the model card: embed; per layer RMSNorm -> grouped-query attention with
// rotary positions (llama3 frequency scaling) -> residual -> RMSNorm -> SwiGLU MLP -> residual; final
// RMSNorm and the output head. Activations are fp32; weights stay bf16/f16/f32 as stored.
#pragma once

#include <span>
#include <vector>

#include "engine/kv_cache.h"
#include "model_files/model_folder.h"
#include "tokenizer/tokenizer.h"

namespace llama31 {

// Which positions of a forward call need logits.
enum class Logits { Last, All, None };

class LlamaModel {
 public:
  // Borrows the folder's weights: the folder must outlive the model.
  explicit LlamaModel(const ModelFolder& folder);

  const LlamaConfig& config() const { return config_; }
  int vocab_size() const { return config_.vocab_size; }

  // Runs tokens at positions cache.size() .. cache.size()+n-1, appending their keys and values to
  // the cache. Fills logits with [n][vocab] (All), [1][vocab] (Last) or nothing (None).
  // Long inputs are processed in chunks of at most max_chunk positions internally.
  // Errors: a token id outside the vocabulary, or more positions than the cache has room for.
  void forward(std::span<const TokenId> tokens, KvCache& cache, Logits which, std::vector<float>& logits) const;

  // One decode step for several sequences at once (continuous batching): row i feeds tokens[i] at the
  // next position of *caches[i] (distinct caches) and gets its logits at logits[i * vocab].
  // Weight products run in groups of at most kernels' small-row count, so each row's numbers are exactly
  // those of a one-token forward() on its own: greedy output does not depend on the batch.
  void forward_decode_batch(std::span<const TokenId> tokens, std::span<KvCache* const> caches,
                            std::vector<float>& logits) const;

  // Positions per internal prefill chunk (bounds activation memory).
  static constexpr int max_chunk = 256;

 private:
  struct LayerWeights {
    const TensorView* q_proj;
    const TensorView* k_proj;
    const TensorView* v_proj;
    const TensorView* o_proj;
    const TensorView* gate_proj;
    const TensorView* up_proj;
    const TensorView* down_proj;
    std::vector<float> input_norm;      // converted to fp32 once at load
    std::vector<float> post_attn_norm;
  };

  // Rows of one pass: row i is tokens[i] at position positions[i] of *caches[i]. grouped: weight
  // products in groups of <= 4 rows (decode batches) instead of one call over all rows (prefill).
  void forward_rows(std::span<const TokenId> tokens, std::span<KvCache* const> caches, std::span<const int> positions,
                    bool grouped, Logits which, float* logits) const;
  void rope_tables(int position, float* cos, float* sin) const;

  LlamaConfig config_;
  const TensorView* embed_tokens_;
  const TensorView* lm_head_;  // the embedding when tied
  std::vector<float> final_norm_;
  std::vector<LayerWeights> layers_;
  std::vector<double> inv_freq_;
};

// Applies a weight matrix stored as [out][in] to rows of fp32 activations.
void apply_linear(const TensorView& w, const float* x, int rows, float* y);

}  // namespace llama31
