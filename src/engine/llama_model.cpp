#include "engine/llama_model.h"

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "kernels/kernels.h"
#include "model_files/quantized_weights.h"
#include "util/error.h"

namespace llama31 {

void fake_quantize_fp8_rows(float* x, int rows, int width, float scale_ub) {
  for (int r = 0; r < rows; ++r) {
    float* row = x + static_cast<size_t>(r) * width;
    float max_abs = 0.0f;
    for (int i = 0; i < width; ++i) max_abs = std::max(max_abs, std::fabs(row[i]));
    const float scale = std::min(max_abs, scale_ub) / 448.0f;
    if (scale == 0.0f) continue;
    for (int i = 0; i < width; ++i) row[i] = round_to_f8e4m3(row[i] / scale) * scale;
  }
}

void apply_linear(const TensorView& w, const float* x, int rows, float* y) {
  kernels::matmul(x, rows, w.data, w.dtype, static_cast<int>(w.shape[0]), static_cast<int>(w.shape[1]), y);
}

LlamaModel::LlamaModel(const ModelFolder& folder) : config_(folder.config) {
  const TensorStore& w = folder.weights;
  embed_tokens_ = &w.get("model.embed_tokens.weight");
  lm_head_ = config_.tie_word_embeddings ? embed_tokens_ : &w.get("lm_head.weight");
  final_norm_ = w.get("model.norm.weight").values();
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
    layer.input_norm = w.get(layer_tensor_name(l, "input_layernorm.weight")).values();
    layer.post_attn_norm = w.get(layer_tensor_name(l, "post_attention_layernorm.weight")).values();
    layers_.push_back(std::move(layer));
    for (const char* module : kLayerLinearModules) {
      const std::string name = layer_tensor_name(l, module);
      if (const Int4Extras extras = find_int4_extras(w, name); extras.offsets != nullptr) {
        int4_extras_.emplace(&w.get(name + ".weight"), extras);
      }
    }
  }
  for (const std::string& module : folder.fp8_activation_modules) {
    const TensorView& weight = w.get(module + ".weight");
    fp8_inputs_.insert(&weight);
    // Held as e4m3 bytes (not widened, not re-stored): the per-channel scales go on after the product.
    if (weight.dtype == DType::F8_E4M3) fp8_scales_.emplace(&weight, w.get(module + kFp8ScaleSuffix).values());
  }
  if (config_.quantization) fp8_scale_ub_ = static_cast<float>(config_.quantization->activation_scale_ub);
  inv_freq_ = rope_inverse_frequencies(config_);
}

size_t LlamaModel::bytes_read_per_token() const {
  size_t total = 0;
  for (const auto& region : bytes_read_per_token_regions()) total += region.size();
  return total;
}

std::vector<std::span<const std::byte>> LlamaModel::bytes_read_per_token_regions() const {
  std::vector<std::span<const std::byte>> regions;
  auto add_floats = [&](const float* values, size_t count) {
    if (count > 0) regions.push_back(std::as_bytes(std::span(values, count)));
  };
  for (const LayerWeights& layer : layers_) {
    add_floats(layer.input_norm.data(), layer.input_norm.size());
    for (const TensorView* w : {layer.q_proj, layer.k_proj, layer.v_proj, layer.o_proj, layer.gate_proj,
                                layer.up_proj, layer.down_proj}) {
      if (w == layer.gate_proj) add_floats(layer.post_attn_norm.data(), layer.post_attn_norm.size());
      regions.emplace_back(w->data, w->nbytes);
      if (const auto fp8 = fp8_scales_.find(w); fp8 != fp8_scales_.end()) add_floats(fp8->second.data(), fp8->second.size());
      if (const auto int4 = int4_extras_.find(w); int4 != int4_extras_.end()) {
        add_floats(int4->second.offsets, static_cast<size_t>(w->shape[0]) * static_cast<size_t>(int4->second.groups));
      }
    }
  }
  add_floats(final_norm_.data(), final_norm_.size());
  regions.emplace_back(lm_head_->data, lm_head_->nbytes);
  return regions;
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
  check_tokens(tokens);
  const size_t vocab = static_cast<size_t>(config_.vocab_size);
  switch (which) {
    case Logits::All: logits.resize(n * vocab); break;
    case Logits::Last: logits.resize(vocab); break;
    case Logits::None: logits.clear(); break;
  }
  cache.reserve(cache.size() + static_cast<int>(n));
  for (size_t start = 0; start < n; start += max_chunk) {
    const size_t len = std::min<size_t>(max_chunk, n - start);
    const bool last_chunk = start + len == n;
    std::vector<KvCache*> caches(len, &cache);
    std::vector<int> positions(len);
    for (size_t i = 0; i < len; ++i) positions[i] = cache.size() + static_cast<int>(i);
    const int prefill_rows = len > 1 ? static_cast<int>(len) : 0;
    const auto chunk = tokens.subspan(start, len);
    if (which == Logits::All) {
      forward_rows(chunk, caches, positions, prefill_rows, {}, true, logits.data() + start * vocab);
    } else if (which == Logits::Last && last_chunk) {
      const int last_row = static_cast<int>(len) - 1;
      forward_rows(chunk, caches, positions, prefill_rows, std::span(&last_row, 1), false, logits.data());
    } else {
      forward_rows(chunk, caches, positions, prefill_rows, {}, false, nullptr);
    }
  }
}

void LlamaModel::check_tokens(std::span<const TokenId> tokens) const {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      fail("token id {} at position {} is outside the vocabulary of {}", tokens[i], i, config_.vocab_size);
    }
  }
}

void LlamaModel::forward_batch(std::span<const SequenceChunk> chunks, std::vector<float>& logits) const {
  if (chunks.empty()) fail("forward_batch needs at least one chunk");
  size_t wanted = 0;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const SequenceChunk& chunk = chunks[c];
    if (chunk.tokens.empty()) fail("forward_batch: chunk {} has no tokens", c);
    if (chunk.cache == nullptr) fail("forward_batch: chunk {} has no cache", c);
    for (size_t d = 0; d < c; ++d) {
      if (chunks[d].cache == chunk.cache) fail("forward_batch: chunks {} and {} share a cache", d, c);
    }
    if (chunk.cache->size() + static_cast<long long>(chunk.tokens.size()) > chunk.cache->capacity()) {
      fail("chunk {}: the input needs {} positions but the context holds {}", c,
           chunk.cache->size() + static_cast<long long>(chunk.tokens.size()), chunk.cache->capacity());
    }
    check_tokens(chunk.tokens);
    if (chunk.logits) wanted++;
  }
  for (const SequenceChunk& chunk : chunks) {
    chunk.cache->reserve(chunk.cache->size() + static_cast<int>(chunk.tokens.size()));
  }
  // Rows: every prefill chunk (two tokens or more) first, then the one-token chunks. Logits rows keep
  // the chunks' order.
  std::vector<TokenId> tokens;
  std::vector<KvCache*> caches;
  std::vector<int> positions;
  std::vector<int> logit_row(chunks.size(), -1);
  auto add_rows = [&](bool prefill) {
    for (size_t c = 0; c < chunks.size(); ++c) {
      const SequenceChunk& chunk = chunks[c];
      if ((chunk.tokens.size() > 1) != prefill) continue;
      for (size_t i = 0; i < chunk.tokens.size(); ++i) {
        tokens.push_back(chunk.tokens[i]);
        caches.push_back(chunk.cache);
        positions.push_back(chunk.cache->size() + static_cast<int>(i));
      }
      if (chunk.logits) logit_row[c] = static_cast<int>(tokens.size()) - 1;
    }
  };
  add_rows(true);
  const int prefill_rows = static_cast<int>(tokens.size());
  add_rows(false);
  std::vector<int> logit_rows;
  for (int row : logit_row) {
    if (row >= 0) logit_rows.push_back(row);
  }
  logits.resize(wanted * static_cast<size_t>(config_.vocab_size));
  forward_rows(tokens, caches, positions, prefill_rows, logit_rows, false, logits.data());
}

void LlamaModel::forward_decode_batch(std::span<const TokenId> tokens, std::span<KvCache* const> caches,
                                      std::vector<float>& logits) const {
  if (tokens.empty()) fail("forward_decode_batch needs at least one row");
  if (caches.size() != tokens.size()) fail("forward_decode_batch: {} tokens but {} caches", tokens.size(), caches.size());
  std::vector<SequenceChunk> chunks(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) chunks[i] = SequenceChunk{tokens.subspan(i, 1), caches[i], true};
  forward_batch(chunks, logits);
}

void LlamaModel::forward_rows(std::span<const TokenId> tokens, std::span<KvCache* const> caches,
                              std::span<const int> positions, int prefill_rows, std::span<const int> logit_rows,
                              bool all_logits, float* logits) const {
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

  // Activations live in buffers kept between calls: fresh ones cost page faults on every call (70 MB
  // for a 512-token chunk at 1B shape, ~4% of prefill).
  thread_local std::vector<float> buffers[10];
  size_t next_buffer = 0;
  auto take = [&](size_t count) {
    std::vector<float>& buffer = buffers[next_buffer++];
    if (buffer.size() < count) buffer.resize(count);
    return std::span<float>(buffer.data(), count);
  };
  const std::span<float> x = take(un * hidden), xn = take(un * hidden), q = take(un * q_dim), k = take(un * kv_dim),
                         v = take(un * kv_dim), attn = take(un * q_dim), proj = take(un * hidden),
                         gate = take(un * inter), up = take(un * inter), act = take(un * inter);
  const int half = head_dim / 2;
  std::vector<float> cos_table(un * half), sin_table(un * half);
  for (int i = 0; i < n; ++i) rope_tables(positions[i], &cos_table[i * half], &sin_table[i * half]);
  // Prefill rows go through the matrix-matrix kernel together; decode rows through the matrix-vector
  // kernel in groups small enough for it. Neither's per-row numbers depend on the other rows.
  const int group = kernels::small_rows();
  auto small_groups = [&](const TensorView& w, const float* x_rows, int first, int count, int in, float* y_rows,
                          int out) {
    for (int r = first; r < first + count; r += group) {
      apply_linear(w, x_rows + static_cast<size_t>(r) * in, std::min(group, first + count - r),
                   y_rows + static_cast<size_t>(r - first) * out);
    }
  };
  std::vector<float> fp8_x, int4_x;
  // What a layer's input goes through before its product: FP8 layers round it to e4m3 per token, GPTQ
  // act-order layers gather it into group order.
  auto layer_input = [&](const TensorView& w, const float* x_rows, int in) {
    if (fp8_inputs_.count(&w) != 0) {
      fp8_x.assign(x_rows, x_rows + static_cast<size_t>(n) * in);
      fake_quantize_fp8_rows(fp8_x.data(), n, in, fp8_scale_ub_);
      x_rows = fp8_x.data();
    }
    const auto int4 = int4_extras_.find(&w);
    if (int4 != int4_extras_.end() && int4->second.input_order != nullptr) {
      int4_x.resize(static_cast<size_t>(n) * in);
      gather_inputs(x_rows, n, in, int4->second.input_order, int4_x.data());
      x_rows = int4_x.data();
    }
    return x_rows;
  };
  // What follows the product: FP8 layers' per-channel scales, INT4 layers' zero-point offsets.
  auto finish_output = [&](const TensorView& w, const float* x_rows, int in, float* y_rows, int out) {
    if (const auto fp8 = fp8_scales_.find(&w); fp8 != fp8_scales_.end()) {  // e4m3 products times each channel's scale
      const float* scale = fp8->second.data();
      for (size_t r = 0; r < static_cast<size_t>(n); ++r) {
        float* y_row = y_rows + r * static_cast<size_t>(out);
        for (int o = 0; o < out; ++o) y_row[o] *= scale[o];
      }
    }
    if (const auto int4 = int4_extras_.find(&w); int4 != int4_extras_.end()) {
      add_group_offsets(x_rows, n, in, int4->second, out, y_rows);
    }
  };
  auto linear = [&](const TensorView& w, const float* x_rows, int in, float* y_rows, int out) {
    if (observer_) observer_(w, x_rows, n, in);
    x_rows = layer_input(w, x_rows, in);
    if (prefill_rows > 0) {
      kernels::matmul_gemm(x_rows, prefill_rows, w.data, w.dtype, static_cast<int>(w.shape[0]),
                           static_cast<int>(w.shape[1]), y_rows);
    }
    small_groups(w, x_rows, prefill_rows, n - prefill_rows, in, y_rows + static_cast<size_t>(prefill_rows) * out,
                 out);
    finish_output(w, x_rows, in, y_rows, out);
  };
  // Layers of the same input (q, k and v; gate and up): one group product for their prefill rows and one
  // per group of decode rows (x prepared once, one team of threads), when all of them prepare their
  // input the same way.
  struct LayerOutput {
    const TensorView* w;
    float* y;
    int out;
  };
  auto linear_group = [&](std::initializer_list<LayerOutput> outputs, const float* x_rows, int in) {
    const bool fp8 = fp8_inputs_.count(outputs.begin()->w) != 0;
    bool shared_input = true;
    for (const LayerOutput& o : outputs) {
      const auto int4 = int4_extras_.find(o.w);
      if ((fp8_inputs_.count(o.w) != 0) != fp8 || (int4 != int4_extras_.end() && int4->second.input_order != nullptr)) {
        shared_input = false;
      }
    }
    if (!shared_input) {
      for (const LayerOutput& o : outputs) linear(*o.w, x_rows, in, o.y, o.out);
      return;
    }
    std::vector<kernels::GemmProduct> products;
    for (const LayerOutput& o : outputs) {
      if (observer_) observer_(*o.w, x_rows, n, in);
      products.push_back({o.w->data, o.w->dtype, o.out, o.y});
    }
    const float* input = layer_input(*outputs.begin()->w, x_rows, in);
    if (prefill_rows > 0) kernels::matmul_gemm_group(input, prefill_rows, in, products);
    for (int r = prefill_rows; r < n; r += group) {  // decode rows, as small_groups takes them
      std::vector<kernels::GemmProduct> rows_products = products;
      for (kernels::GemmProduct& p : rows_products) p.y += static_cast<size_t>(r) * p.out;
      kernels::matmul_group(input + static_cast<size_t>(r) * in, std::min(group, n - r), in, rows_products);
    }
    for (const LayerOutput& o : outputs) finish_output(*o.w, input, in, o.y, o.out);
  };

  // Embedding: one row of the table per token.
  const size_t embed_row_bytes = row_bytes(embed_tokens_->dtype, hidden);
  for (int i = 0; i < n; ++i) {
    convert_to_f32(embed_tokens_->dtype, embed_tokens_->data + static_cast<size_t>(tokens[i]) * embed_row_bytes,
                   &x[i * hidden], static_cast<size_t>(hidden));
  }

  const int threads = kernels::num_threads();
  const bool many_rows = threads > 1 && n >= 16;
  // The row-wise steps between the products: on the team when there are enough rows to share (a prompt),
  // else on this thread without entering a parallel region (a serialized one still cost ~2 us, five
  // per layer of every decoded token).
  auto for_each_row = [&](const auto& step) {
    if (!many_rows) {
      for (int i = 0; i < n; ++i) step(i);
      return;
    }
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int i = 0; i < n; ++i) step(i);
  };
  // Prefill rows attend in blocks of up to kAttentionBlockRows consecutive positions of one sequence:
  // kernels::attention_rows reads each key/value tile once for all the block's rows and all the query
  // heads of a kv head. A row's result does not depend on its block, so any cut gives the same numbers.
  // Blocks with the most work (rows x context) come first, for the dynamic schedule below.
  constexpr int kAttentionBlockRows = 16;
  struct RowBlock {
    int first_row, rows;
  };
  std::vector<RowBlock> row_blocks;
  for (int i = 0; i < prefill_rows;) {
    int end = i + 1;
    while (end < prefill_rows && end - i < kAttentionBlockRows && caches[end] == caches[i] &&
           positions[end] == positions[end - 1] + 1) {
      ++end;
    }
    row_blocks.push_back({i, end - i});
    i = end;
  }
  auto block_work = [&](const RowBlock& b) {
    return static_cast<long long>(b.rows) * (positions[b.first_row] + b.rows);
  };
  std::stable_sort(row_blocks.begin(), row_blocks.end(),
                   [&](const RowBlock& a, const RowBlock& b) { return block_work(a) > block_work(b); });
  // Work items of the attention loop: (block, kv head) pairs, then (decode row, kv head) pairs. A decode
  // row is a block of one row for the same tiled kernel: the threads share its kv heads (at long contexts
  // decode reads as many cache bytes as weight bytes), each key tile is read once for the query heads of
  // its group, and a position decoded gets the attention it gets inside a prompt, bit for bit. At 4096
  // positions of context this decoded the 1B shape's Q4_0 file at 15-20 tokens/s where the single-row
  // kernel, on one thread, gave 9-11; at an empty context, 40-47 against 38-46.
  const int block_items = static_cast<int>(row_blocks.size()) * n_kv_heads;
  const int attention_items = block_items + (n - prefill_rows) * n_kv_heads;
  // Attention over a short context is a few microseconds of work, less than waking the team costs: it
  // runs on this thread below kernels::kParallelMinWork multiply-adds (q.k and p.v over every row's
  // context), as matmul does.
  size_t attention_work = 0;
  for (int i = 0; i < n; ++i) attention_work += 2 * static_cast<size_t>(positions[i] + 1) * static_cast<size_t>(q_dim);
  const bool parallel_attention = threads > 1 && attention_items > 1 && attention_work >= kernels::kParallelMinWork;

  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& layer = layers_[l];

    // Attention block. The row-wise steps between the products run on the team too when there are
    // enough rows to share (a prompt): left to one thread they kept the other waiting.
    for_each_row([&](int i) { kernels::rmsnorm(&x[i * hidden], layer.input_norm.data(), hidden, eps, &xn[i * hidden]); });
    linear_group({{layer.q_proj, q.data(), q_dim}, {layer.k_proj, k.data(), kv_dim}, {layer.v_proj, v.data(), kv_dim}},
                 xn.data(), hidden);
    for_each_row([&](int i) {
      kernels::rope(&q[i * q_dim], n_heads, head_dim, &cos_table[i * half], &sin_table[i * half]);
      kernels::rope(&k[i * kv_dim], n_kv_heads, head_dim, &cos_table[i * half], &sin_table[i * half]);
      std::copy_n(&k[i * kv_dim], kv_dim, caches[i]->keys(l, positions[i]));
      std::copy_n(&v[i * kv_dim], kv_dim, caches[i]->values(l, positions[i]));
    });
    // Each query position attends to itself and every earlier position (causal): prefill rows by blocks
    // and kv heads, decode rows by kv heads.
    auto attend = [&](int item) {
      if (item < block_items) {
        const RowBlock& b = row_blocks[static_cast<size_t>(item / n_kv_heads)];
        const KvCache& cache = *caches[b.first_row];
        kernels::attention_rows(&q[b.first_row * q_dim], b.rows, positions[b.first_row], cache.key_blocks(l),
                                cache.value_blocks(l), n_heads, n_kv_heads, head_dim, item % n_kv_heads,
                                &attn[b.first_row * q_dim]);
        return;
      }
      const int i = prefill_rows + (item - block_items) / n_kv_heads;
      const KvCache& cache = *caches[i];
      kernels::attention_rows(&q[i * q_dim], 1, positions[i], cache.key_blocks(l), cache.value_blocks(l), n_heads,
                              n_kv_heads, head_dim, (item - block_items) % n_kv_heads, &attn[i * q_dim]);
    };
    if (parallel_attention) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
      for (int item = 0; item < attention_items; ++item) attend(item);
    } else {
      for (int item = 0; item < attention_items; ++item) attend(item);
    }
    linear(*layer.o_proj, attn.data(), q_dim, proj.data(), hidden);

    // MLP block: down(silu(gate(x)) * up(x)).
    for_each_row([&](int i) {
      for (int j = 0; j < hidden; ++j) x[i * hidden + j] += proj[i * hidden + j];
      kernels::rmsnorm(&x[i * hidden], layer.post_attn_norm.data(), hidden, eps, &xn[i * hidden]);
    });
    linear_group({{layer.gate_proj, gate.data(), inter}, {layer.up_proj, up.data(), inter}}, xn.data(), hidden);
    for_each_row([&](int i) { kernels::silu_mul(&gate[i * inter], &up[i * inter], inter, &act[i * inter]); });
    linear(*layer.down_proj, act.data(), inter, proj.data(), hidden);
    for_each_row([&](int i) {
      for (int j = 0; j < hidden; ++j) x[i * hidden + j] += proj[i * hidden + j];
    });
  }
  for (int i = 0; i < n; ++i) caches[i]->grow_to(std::max(caches[i]->size(), positions[i] + 1));

  if (all_logits) {
    for (int i = 0; i < n; ++i) kernels::rmsnorm(&x[i * hidden], final_norm_.data(), hidden, eps, &xn[i * hidden]);
    apply_linear(*lm_head_, xn.data(), n, logits);
    return;
  }
  if (logit_rows.empty()) return;
  const int rows = static_cast<int>(logit_rows.size());
  std::vector<float> normed(static_cast<size_t>(rows) * hidden);
  for (int r = 0; r < rows; ++r) {
    kernels::rmsnorm(&x[static_cast<size_t>(logit_rows[r]) * hidden], final_norm_.data(), hidden, eps,
                     &normed[static_cast<size_t>(r) * hidden]);
  }
  small_groups(*lm_head_, normed.data(), 0, rows, hidden, logits, c.vocab_size);
}

}  // namespace llama31
