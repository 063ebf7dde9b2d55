// The Llama 3.1 forward pass over weights kept in the mapped checkpoint.
//
// Reads top to bottom like the model card: embed; per layer RMSNorm -> grouped-query attention with
// rotary positions (llama3 frequency scaling) -> residual -> RMSNorm -> SwiGLU MLP -> residual; final
// RMSNorm and the output head. Activations are fp32; weights stay bf16/f16/f32 as stored (FP8 checkpoints'
// layers as e4m3 bytes, their per-channel scales applied to the products).
#pragma once

#include <functional>
#include <unordered_map>
#include <span>
#include <unordered_set>
#include <vector>

#include "engine/int4_linear.h"
#include "engine/kv_cache.h"
#include "model_files/model_folder.h"
#include "tokenizer/tokenizer.h"

namespace llama31 {

// Which positions of a forward call need logits.
enum class Logits { Last, All, None };

// One sequence's share of a batched forward call: tokens appended at cache->size().
struct SequenceChunk {
  std::span<const TokenId> tokens;
  KvCache* cache = nullptr;
  bool logits = false;  // wants the logits after its last token
};

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

  // Several sequences in one pass (continuous batching: decode steps and prompt chunks together). Logits
  // of the chunks that ask come out in their order, [vocab] each. Each sequence's numbers depend only on
  // how it was cut into chunks, never on the other sequences of the call: a one-token chunk is a decode
  // row (matrix-vector kernels in groups of kernels' small-row count, exactly as a lone one-token
  // forward), a longer chunk is prefill rows (the matrix-matrix kernel, whose rows do not depend on each
  // other), and logits rows always go through the small-row kernels. Errors as forward; the caches of the
  // chunks must be distinct.
  void forward_batch(std::span<const SequenceChunk> chunks, std::vector<float>& logits) const;

  // One decode step for several sequences: forward_batch with a one-token chunk per cache.
  void forward_decode_batch(std::span<const TokenId> tokens, std::span<KvCache* const> caches,
                            std::vector<float>& logits) const;

  // Bytes of weights one decode step reads: every layer's matrices and norms, the final norm and the
  // head (an embedding row is not counted). Decode speed is bounded by this over the read bandwidth.
  size_t bytes_read_per_token() const;
  // Those bytes themselves, in the order forward reads them (bytes_read_per_token is their total).
  std::vector<std::span<const std::byte>> bytes_read_per_token_regions() const;

  // Sees the input rows of every linear layer of the decoder layers as forward computes them: the weight
  // multiplied, the rows and their width. For calibration (activation-aware quantization); it runs on
  // the forward pass's thread. An empty function removes it.
  using LinearInputObserver = std::function<void(const TensorView& weight, const float* rows, int count, int width)>;
  void set_linear_input_observer(LinearInputObserver observer) { observer_ = std::move(observer); }

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

  // Rows of one pass: row i is tokens[i] at position positions[i] of *caches[i] (blocks reserved).
  // Rows [0, prefill_rows) are multiplied together by the matrix-matrix kernel, the rest in groups of
  // small rows. Logits: for rows logit_rows, in that order, by the small-row kernels; or, with
  // all_logits, for every row by one product.
  void forward_rows(std::span<const TokenId> tokens, std::span<KvCache* const> caches, std::span<const int> positions,
                    int prefill_rows, std::span<const int> logit_rows, bool all_logits, float* logits) const;
  void rope_tables(int position, float* cos, float* sin) const;
  void check_tokens(std::span<const TokenId> tokens) const;

  LlamaConfig config_;
  const TensorView* embed_tokens_;
  const TensorView* lm_head_;  // the embedding when tied
  std::vector<float> final_norm_;
  std::vector<LayerWeights> layers_;
  // FP8 layers held as e4m3 (kernels multiply by the plain e4m3 values): each output channel's scale.
  std::unordered_map<const TensorView*, std::vector<float>> fp8_scales_;
  std::vector<double> inv_freq_;
  std::unordered_set<const TensorView*> fp8_inputs_;  // FP8 layers (fbgemm_fp8): inputs quantized per token
  std::unordered_map<const TensorView*, Int4Extras> int4_extras_;  // int4 layers held as Q4_0 plus offsets
  float fp8_scale_ub_ = 1200.0f;
  LinearInputObserver observer_;
};

// FP8 activations as fbgemm_fp8 forms them: each row scaled by min(max|x|, scale_ub) / 448, rounded
// to e4m3 (saturating) and scaled back.
void fake_quantize_fp8_rows(float* x, int rows, int width, float scale_ub);

// Applies a weight matrix stored as [out][in] to rows of fp32 activations.
void apply_linear(const TensorView& w, const float* x, int rows, float* y);

}  // namespace llama31
