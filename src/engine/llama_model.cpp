#include "engine/llama_model.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"
#include "util/error.h"

namespace llama31 {

namespace {

// Rows per weight product in a decode batch: kernels::matmul's small-row path (rows <= 4) computes each
// row exactly as it does for one row alone.
constexpr int kDecodeGroup = 4;

std::vector<float> to_f32(const TensorView& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  convert_to_f32(t.dtype, t.data, out.data(), out.size());
  return out;
}

}  // namespace

void apply_linear(const TensorView& w, const float* x, int rows, float* y) {
  kernels::matmul(x, rows, w.data, w.dtype, static_cast<int>(w.shape[0]), static_cast<int>(w.shape[1]), y);
}

LlamaModel::LlamaModel(const ModelFolder& folder) : config_(folder.config) {
  const TensorStore& w = folder.weights;
  embed_tokens_ = &w.get("model.embed_tokens.weight");
  lm_head_ = config_.tie_word_embeddings ? embed_tokens_ : &w.get("lm_head.weight");
  final_norm_ = to_f32(w.get("model.norm.weight"));
  layers_.reserve(static_cast<size_t>(config_.num_hidden_layers));
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    LayerWeights layer;
    layer.q_proj = &w.get(layer_tensor_name(l, "self_attn.q_proj.weight"));
    layer.k_proj = &w.get(layer_tensor_name(l, "self_attn.k_proj.weight"));
    layer.v_proj = &w.get(layer_tensor_name(l, "self_attn.v_proj.weight"));
    layer.o_proj = &w.get(layer_tensor_name(l, "self_attn.o_proj.weight"));
    layer.gate_proj = &w.get(layer_tensor_name(l, "mlp.gate_proj.weight"));
    layer.up_proj = &w.get(layer_tensor_name(l, "mlp.up_proj.weight"));
    layer.down_proj = &w.get(layer_tensor_name(l, "mlp.down_proj.weight"));
    layer.input_norm = to_f32(w.get(layer_tensor_name(l, "input_layernorm.weight")));
    layer.post_attn_norm = to_f32(w.get(layer_tensor_name(l, "post_attention_layernorm.weight")));
    layers_.push_back(std::move(layer));
  }
  inv_freq_ = rope_inverse_frequencies(config_);
}

void LlamaModel::rope_tables(int position, float* cos, float* sin) const {
  // Angles in double, then rounded: transformers forms position * inv_freq in fp32, which loses
  // up to ~1e-4 rad at position 2048; the double angle is the exact value both approximate.
  for (size_t i = 0; i < inv_freq_.size(); ++i) {
    const double angle = static_cast<double>(position) * inv_freq_[i];
    cos[i] = static_cast<float>(std::cos(angle));
    sin[i] = static_cast<float>(std::sin(angle));
  }
}

void LlamaModel::forward(std::span<const TokenId> tokens, KvCache& cache, Logits which,
                         std::vector<float>& logits) const {
  const size_t n = tokens.size();
  if (n == 0) fail("forward needs at least one token");
  if (cache.size() + static_cast<long long>(n) > cache.capacity()) {
    fail("the input needs {} positions but the context holds {} ({} already used); raise --ctx-size "
         "(the model allows up to {})",
         cache.size() + static_cast<long long>(n), cache.capacity(), cache.size(), config_.max_position_embeddings);
  }
  for (size_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      fail("token id {} at position {} is outside the vocabulary of {}", tokens[i], i, config_.vocab_size);
    }
  }
  const size_t vocab = static_cast<size_t>(config_.vocab_size);
  switch (which) {
    case Logits::All: logits.resize(n * vocab); break;
    case Logits::Last: logits.resize(vocab); break;
    case Logits::None: logits.clear(); break;
  }
  for (size_t start = 0; start < n; start += max_chunk) {
    const size_t len = std::min<size_t>(max_chunk, n - start);
    const bool last_chunk = start + len == n;
    Logits chunk_which = Logits::None;
    float* out = nullptr;
    if (which == Logits::All) {
      chunk_which = Logits::All;
      out = logits.data() + start * vocab;
    } else if (which == Logits::Last && last_chunk) {
      chunk_which = Logits::Last;
      out = logits.data();
    }
    std::vector<KvCache*> caches(len, &cache);
    std::vector<int> positions(len);
    for (size_t i = 0; i < len; ++i) positions[i] = cache.size() + static_cast<int>(i);
    forward_rows(tokens.subspan(start, len), caches, positions, /*grouped=*/false, chunk_which, out);
  }
}

void LlamaModel::forward_decode_batch(std::span<const TokenId> tokens, std::span<KvCache* const> caches,
                                      std::vector<float>& logits) const {
  const size_t n = tokens.size();
  if (n == 0) fail("forward_decode_batch needs at least one row");
  if (caches.size() != n) fail("forward_decode_batch: {} tokens but {} caches", n, caches.size());
  std::vector<int> positions(n);
  for (size_t i = 0; i < n; ++i) {
    if (caches[i]->size() >= caches[i]->capacity()) {
      fail("row {}: the context of {} positions is full", i, caches[i]->capacity());
    }
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      fail("token id {} at row {} is outside the vocabulary of {}", tokens[i], i, config_.vocab_size);
    }
    for (size_t j = 0; j < i; ++j) {
      if (caches[j] == caches[i]) fail("forward_decode_batch: rows {} and {} share a cache", j, i);
    }
    positions[i] = caches[i]->size();
  }
  logits.resize(n * static_cast<size_t>(config_.vocab_size));
  forward_rows(tokens, caches, positions, /*grouped=*/true, Logits::All, logits.data());
}

void LlamaModel::forward_rows(std::span<const TokenId> tokens, std::span<KvCache* const> caches,
                              std::span<const int> positions, bool grouped, Logits which, float* logits) const {
  const LlamaConfig& c = config_;
  const int n = static_cast<int>(tokens.size());
  const int hidden = c.hidden_size;
  const int head_dim = c.head_dim;
  const int n_heads = c.num_attention_heads;
  const int n_kv_heads = c.num_key_value_heads;
  const int q_dim = n_heads * head_dim;
  const int kv_dim = n_kv_heads * head_dim;
  const int inter = c.intermediate_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const auto un = static_cast<size_t>(n);

  std::vector<float> x(un * hidden), xn(un * hidden), q(un * q_dim), k(un * kv_dim), v(un * kv_dim);
  std::vector<float> attn(un * q_dim), proj(un * hidden), gate(un * inter), up(un * inter), act(un * inter);
  const int half = head_dim / 2;
  std::vector<float> cos_table(un * half), sin_table(un * half);
  int ctx_end = 0;
  for (int i = 0; i < n; ++i) {
    rope_tables(positions[i], &cos_table[i * half], &sin_table[i * half]);
    ctx_end = std::max(ctx_end, positions[i] + 1);
  }
  // Decode batches multiply in groups of rows small enough for the small-row kernels, whose per-row
  // results do not depend on the group size; prefill multiplies all rows at once.
  auto linear = [&](const TensorView& w, const float* x_rows, int in, float* y_rows, int out) {
    if (!grouped) return apply_linear(w, x_rows, n, y_rows);
    for (int r = 0; r < n; r += kDecodeGroup) {
      apply_linear(w, x_rows + static_cast<size_t>(r) * in, std::min(kDecodeGroup, n - r),
                   y_rows + static_cast<size_t>(r) * out);
    }
  };

  // Embedding: one row of the table per token.
  const size_t row_bytes = static_cast<size_t>(hidden) * dtype_size(embed_tokens_->dtype);
  for (int i = 0; i < n; ++i) {
    convert_to_f32(embed_tokens_->dtype, embed_tokens_->data + static_cast<size_t>(tokens[i]) * row_bytes,
                   &x[i * hidden], static_cast<size_t>(hidden));
  }

  const int threads = kernels::num_threads();
  std::vector<float> scratch(static_cast<size_t>(threads) * ctx_end);

  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& layer = layers_[l];

    // Attention block.
    for (int i = 0; i < n; ++i) kernels::rmsnorm(&x[i * hidden], layer.input_norm.data(), hidden, eps, &xn[i * hidden]);
    linear(*layer.q_proj, xn.data(), hidden, q.data(), q_dim);
    linear(*layer.k_proj, xn.data(), hidden, k.data(), kv_dim);
    linear(*layer.v_proj, xn.data(), hidden, v.data(), kv_dim);
    for (int i = 0; i < n; ++i) {
      kernels::rope(&q[i * q_dim], n_heads, head_dim, &cos_table[i * half], &sin_table[i * half]);
      kernels::rope(&k[i * kv_dim], n_kv_heads, head_dim, &cos_table[i * half], &sin_table[i * half]);
      std::copy_n(&k[i * kv_dim], kv_dim, caches[i]->keys(l, positions[i]));
      std::copy_n(&v[i * kv_dim], kv_dim, caches[i]->values(l, positions[i]));
    }
    // Each query position attends to itself and every earlier position (causal).
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (n > 1)
    for (int i = 0; i < n; ++i) {
      float* s = scratch.data() + static_cast<size_t>(omp_get_thread_num()) * ctx_end;
      const KvCache& cache = *caches[i];
      kernels::attention(&q[i * q_dim], cache.keys(l, 0), cache.values(l, 0), positions[i] + 1, n_heads, n_kv_heads,
                         head_dim, cache.row_floats(), &attn[i * q_dim], s);
    }
    linear(*layer.o_proj, attn.data(), q_dim, proj.data(), hidden);
    for (size_t j = 0; j < x.size(); ++j) x[j] += proj[j];

    // MLP block: down(silu(gate(x)) * up(x)).
    for (int i = 0; i < n; ++i) {
      kernels::rmsnorm(&x[i * hidden], layer.post_attn_norm.data(), hidden, eps, &xn[i * hidden]);
    }
    linear(*layer.gate_proj, xn.data(), hidden, gate.data(), inter);
    linear(*layer.up_proj, xn.data(), hidden, up.data(), inter);
    kernels::silu_mul(gate.data(), up.data(), n * inter, act.data());
    linear(*layer.down_proj, act.data(), inter, proj.data(), hidden);
    for (size_t j = 0; j < x.size(); ++j) x[j] += proj[j];
  }
  for (int i = 0; i < n; ++i) caches[i]->grow_to(std::max(caches[i]->size(), positions[i] + 1));

  if (which == Logits::None) return;
  const int first = which == Logits::All ? 0 : n - 1;
  const int rows = n - first;
  for (int i = first; i < n; ++i) kernels::rmsnorm(&x[i * hidden], final_norm_.data(), hidden, eps, &xn[i * hidden]);
  if (!grouped) {
    apply_linear(*lm_head_, &xn[static_cast<size_t>(first) * hidden], rows, logits);
  } else {
    const size_t vocab = static_cast<size_t>(c.vocab_size);
    for (int r = first; r < n; r += kDecodeGroup) {
      apply_linear(*lm_head_, &xn[static_cast<size_t>(r) * hidden], std::min(kDecodeGroup, n - r),
                   logits + static_cast<size_t>(r - first) * vocab);
    }
  }
}

}  // namespace llama31
