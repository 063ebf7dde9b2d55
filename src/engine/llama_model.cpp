#include "engine/llama_model.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"
#include "util/error.h"

namespace llama31 {

namespace {

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
    forward_chunk(tokens.subspan(start, len), cache, chunk_which, out);
  }
}

void LlamaModel::forward_chunk(std::span<const TokenId> tokens, KvCache& cache, Logits which,
                               float* logits) const {
  const LlamaConfig& c = config_;
  const int n = static_cast<int>(tokens.size());
  const int hidden = c.hidden_size;
  const int head_dim = c.head_dim;
  const int n_heads = c.num_attention_heads;
  const int n_kv_heads = c.num_key_value_heads;
  const int q_dim = n_heads * head_dim;
  const int kv_dim = n_kv_heads * head_dim;
  const int inter = c.intermediate_size;
  const int start_pos = cache.size();
  const float eps = static_cast<float>(c.rms_norm_eps);
  const auto un = static_cast<size_t>(n);

  std::vector<float> x(un * hidden), xn(un * hidden), q(un * q_dim), k(un * kv_dim), v(un * kv_dim);
  std::vector<float> attn(un * q_dim), proj(un * hidden), gate(un * inter), up(un * inter), act(un * inter);
  const int half = head_dim / 2;
  std::vector<float> cos_table(un * half), sin_table(un * half);
  for (int i = 0; i < n; ++i) rope_tables(start_pos + i, &cos_table[i * half], &sin_table[i * half]);

  // Embedding: one row of the table per token.
  const size_t row_bytes = static_cast<size_t>(hidden) * dtype_size(embed_tokens_->dtype);
  for (int i = 0; i < n; ++i) {
    convert_to_f32(embed_tokens_->dtype, embed_tokens_->data + static_cast<size_t>(tokens[i]) * row_bytes,
                   &x[i * hidden], static_cast<size_t>(hidden));
  }

  const int ctx_end = start_pos + n;
  const int threads = kernels::num_threads();
  std::vector<float> scratch(static_cast<size_t>(threads) * ctx_end);

  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& layer = layers_[l];

    // Attention block.
    for (int i = 0; i < n; ++i) kernels::rmsnorm(&x[i * hidden], layer.input_norm.data(), hidden, eps, &xn[i * hidden]);
    apply_linear(*layer.q_proj, xn.data(), n, q.data());
    apply_linear(*layer.k_proj, xn.data(), n, k.data());
    apply_linear(*layer.v_proj, xn.data(), n, v.data());
    for (int i = 0; i < n; ++i) {
      kernels::rope(&q[i * q_dim], n_heads, head_dim, &cos_table[i * half], &sin_table[i * half]);
      kernels::rope(&k[i * kv_dim], n_kv_heads, head_dim, &cos_table[i * half], &sin_table[i * half]);
      std::copy_n(&k[i * kv_dim], kv_dim, cache.keys(l, start_pos + i));
      std::copy_n(&v[i * kv_dim], kv_dim, cache.values(l, start_pos + i));
    }
    const size_t kv_stride = cache.row_floats();
    const float* k_base = cache.keys(l, 0);
    const float* v_base = cache.values(l, 0);
    // Each query position attends to itself and every earlier position (causal).
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (n > 1)
    for (int i = 0; i < n; ++i) {
      float* s = scratch.data() + static_cast<size_t>(omp_get_thread_num()) * ctx_end;
      kernels::attention(&q[i * q_dim], k_base, v_base, start_pos + i + 1, n_heads, n_kv_heads, head_dim, kv_stride,
                         &attn[i * q_dim], s);
    }
    apply_linear(*layer.o_proj, attn.data(), n, proj.data());
    for (size_t j = 0; j < x.size(); ++j) x[j] += proj[j];

    // MLP block: down(silu(gate(x)) * up(x)).
    for (int i = 0; i < n; ++i) {
      kernels::rmsnorm(&x[i * hidden], layer.post_attn_norm.data(), hidden, eps, &xn[i * hidden]);
    }
    apply_linear(*layer.gate_proj, xn.data(), n, gate.data());
    apply_linear(*layer.up_proj, xn.data(), n, up.data());
    kernels::silu_mul(gate.data(), up.data(), n * inter, act.data());
    apply_linear(*layer.down_proj, act.data(), n, proj.data());
    for (size_t j = 0; j < x.size(); ++j) x[j] += proj[j];
  }
  cache.grow_to(ctx_end);

  if (which == Logits::None) return;
  const int first = which == Logits::All ? 0 : n - 1;
  const int rows = n - first;
  for (int i = first; i < n; ++i) kernels::rmsnorm(&x[i * hidden], final_norm_.data(), hidden, eps, &xn[i * hidden]);
  apply_linear(*lm_head_, &xn[static_cast<size_t>(first) * hidden], rows, logits);
}

}  // namespace llama31
