// Float64 Llama 3.1 reference; see reference_f64.h. The formulas follow transformers' modeling_llama:
//   RMSNorm:  w * x / sqrt(mean(x^2) + eps)
//   RoPE:     x * cos(p * f) + rotate_half(x) * sin(p * f), rotate_half(x) = [-x2, x1] (halves, not pairs)
//   attention: softmax(q k^T * head_dim^-0.5 + causal mask) v, query head h reads kv head h / (heads / kv_heads)
//   MLP:      down(silu(gate(x)) * up(x)), silu(x) = x / (1 + exp(-x))
//   decoder:  h = x + attn(norm1(x)); out = h + mlp(norm2(h)); logits = lm_head(norm(out))
#include "engine/reference_f64.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <stdexcept>
#include <string>

namespace llama31::reference {
namespace {

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

const std::vector<float>& tensor(const TestModelWeights& weights, const std::string& name, size_t expected_size) {
  auto it = weights.tensors.find(name);
  if (it == weights.tensors.end()) throw std::invalid_argument("reference: missing tensor " + name);
  if (it->second.size() != expected_size) {
    throw std::invalid_argument("reference: tensor " + name + " has " + std::to_string(it->second.size()) +
                                " values, expected " + std::to_string(expected_size));
  }
  return it->second;
}

std::string layer_name(int layer, const char* suffix) {
  return "model.layers." + std::to_string(layer) + "." + suffix;
}

// y[out] = sum_in w[out][in] * x[in]
void linear(const std::vector<double>& w, const double* x, int in, int out, double* y) {
  for (int o = 0; o < out; ++o) {
    const double* row = w.data() + static_cast<size_t>(o) * in;
    double acc = 0.0;
    for (int i = 0; i < in; ++i) acc += row[i] * x[i];
    y[o] = acc;
  }
}

void rms_norm(const double* x, const std::vector<double>& weight, double eps, double* y) {
  const size_t n = weight.size();
  double sum_squares = 0.0;
  for (size_t i = 0; i < n; ++i) sum_squares += x[i] * x[i];
  const double inv_rms = 1.0 / std::sqrt(sum_squares / static_cast<double>(n) + eps);
  for (size_t i = 0; i < n; ++i) y[i] = weight[i] * (x[i] * inv_rms);
}

}  // namespace

std::vector<double> llama3_inverse_frequencies(const LlamaConfig& config, bool apply_scaling) {
  const int dim = config.head_dim > 0 ? config.head_dim : config.hidden_size / config.num_attention_heads;
  std::vector<double> inv_freq(static_cast<size_t>(dim / 2));
  for (int i = 0; i < dim / 2; ++i) {
    inv_freq[static_cast<size_t>(i)] = 1.0 / std::pow(config.rope_theta, static_cast<double>(2 * i) / dim);
  }
  if (!apply_scaling || !config.rope_scaling || config.rope_scaling->rope_type != "llama3") return inv_freq;

  const RopeScaling& s = *config.rope_scaling;
  const double old_context = s.original_max_position_embeddings;
  const double low_freq_wavelen = old_context / s.low_freq_factor;
  const double high_freq_wavelen = old_context / s.high_freq_factor;
  for (double& f : inv_freq) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen > low_freq_wavelen) {
      f = f / s.factor;  // long wavelengths: interpolated by the full factor
    } else if (wavelen >= high_freq_wavelen) {
      // the band between: blend of scaled and unscaled
      const double smooth = (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      f = (1.0 - smooth) * f / s.factor + smooth * f;
    }  // short wavelengths stay as they are
  }
  return inv_freq;
}

ReferenceLlama::ReferenceLlama(const TestModelWeights& weights, ReferenceOptions options) {
  const LlamaConfig& c = weights.config;
  hidden_ = c.hidden_size;
  intermediate_ = c.intermediate_size;
  heads_ = c.num_attention_heads;
  kv_heads_ = c.num_key_value_heads > 0 ? c.num_key_value_heads : c.num_attention_heads;
  head_dim_ = c.head_dim > 0 ? c.head_dim : c.hidden_size / c.num_attention_heads;
  vocab_ = c.vocab_size;
  rms_eps_ = c.rms_norm_eps;
  if (hidden_ <= 0 || heads_ <= 0 || heads_ % kv_heads_ != 0 || head_dim_ % 2 != 0 || vocab_ <= 0) {
    throw std::invalid_argument("reference: unsupported config");
  }
  inv_freq_ = llama3_inverse_frequencies(c, options.apply_rope_scaling);

  const auto h = static_cast<size_t>(hidden_);
  const auto inter = static_cast<size_t>(intermediate_);
  const auto q_dim = static_cast<size_t>(heads_ * head_dim_);
  const auto kv_dim = static_cast<size_t>(kv_heads_ * head_dim_);
  const auto v = static_cast<size_t>(vocab_);

  embed_tokens_ = tensor(weights, "model.embed_tokens.weight", v * h);
  const bool has_head = weights.tensors.count("lm_head.weight") != 0;
  if (c.tie_word_embeddings || !has_head) {
    lm_head_.assign(embed_tokens_.begin(), embed_tokens_.end());
  } else {
    lm_head_ = to_double(tensor(weights, "lm_head.weight", v * h));
  }
  final_norm_ = to_double(tensor(weights, "model.norm.weight", h));
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    Layer layer;
    layer.input_norm = to_double(tensor(weights, layer_name(l, "input_layernorm.weight"), h));
    layer.post_attention_norm = to_double(tensor(weights, layer_name(l, "post_attention_layernorm.weight"), h));
    layer.q_proj = to_double(tensor(weights, layer_name(l, "self_attn.q_proj.weight"), q_dim * h));
    layer.k_proj = to_double(tensor(weights, layer_name(l, "self_attn.k_proj.weight"), kv_dim * h));
    layer.v_proj = to_double(tensor(weights, layer_name(l, "self_attn.v_proj.weight"), kv_dim * h));
    layer.o_proj = to_double(tensor(weights, layer_name(l, "self_attn.o_proj.weight"), h * q_dim));
    layer.gate_proj = to_double(tensor(weights, layer_name(l, "mlp.gate_proj.weight"), inter * h));
    layer.up_proj = to_double(tensor(weights, layer_name(l, "mlp.up_proj.weight"), inter * h));
    layer.down_proj = to_double(tensor(weights, layer_name(l, "mlp.down_proj.weight"), h * inter));
    layers_.push_back(std::move(layer));
  }
}

// In place: x * cos + rotate_half(x) * sin, with rotate_half pairing element i with i + head_dim / 2.
void ReferenceLlama::apply_rotary(double* x, int position) const {
  const int half = head_dim_ / 2;
  for (int i = 0; i < half; ++i) {
    const double angle = static_cast<double>(position) * inv_freq_[static_cast<size_t>(i)];
    const double cos_a = std::cos(angle), sin_a = std::sin(angle);
    const double first = x[i], second = x[i + half];
    x[i] = first * cos_a - second * sin_a;
    x[i + half] = second * cos_a + first * sin_a;
  }
}

void ReferenceLlama::decoder_layer(const Layer& layer, std::vector<double>& keys, std::vector<double>& values,
                                   int position, std::vector<double>& x) const {
  const auto h = static_cast<size_t>(hidden_);
  const int q_dim = heads_ * head_dim_;
  const int kv_dim = kv_heads_ * head_dim_;

  // Attention block.
  std::vector<double> normed(h), q(static_cast<size_t>(q_dim)), k(static_cast<size_t>(kv_dim)),
      v(static_cast<size_t>(kv_dim));
  rms_norm(x.data(), layer.input_norm, rms_eps_, normed.data());
  linear(layer.q_proj, normed.data(), hidden_, q_dim, q.data());
  linear(layer.k_proj, normed.data(), hidden_, kv_dim, k.data());
  linear(layer.v_proj, normed.data(), hidden_, kv_dim, v.data());
  for (int head = 0; head < heads_; ++head) apply_rotary(q.data() + head * head_dim_, position);
  for (int head = 0; head < kv_heads_; ++head) apply_rotary(k.data() + head * head_dim_, position);
  keys.insert(keys.end(), k.begin(), k.end());
  values.insert(values.end(), v.begin(), v.end());

  const int seen = position + 1;  // causal: this token attends to positions 0..position
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  const int group = heads_ / kv_heads_;  // repeat_kv: query head h uses kv head h / group
  std::vector<double> attended(static_cast<size_t>(q_dim), 0.0), scores(static_cast<size_t>(seen));
  for (int head = 0; head < heads_; ++head) {
    const double* qh = q.data() + head * head_dim_;
    const int kv_head = head / group;
    double max_score = -std::numeric_limits<double>::infinity();
    for (int t = 0; t < seen; ++t) {
      const double* kt = keys.data() + static_cast<size_t>(t) * kv_dim + kv_head * head_dim_;
      double dot = 0.0;
      for (int d = 0; d < head_dim_; ++d) dot += qh[d] * kt[d];
      scores[static_cast<size_t>(t)] = dot * scale;
      max_score = std::max(max_score, scores[static_cast<size_t>(t)]);
    }
    double denominator = 0.0;
    for (double& s : scores) {
      s = std::exp(s - max_score);
      denominator += s;
    }
    double* out = attended.data() + head * head_dim_;
    for (int t = 0; t < seen; ++t) {
      const double p = scores[static_cast<size_t>(t)] / denominator;
      const double* vt = values.data() + static_cast<size_t>(t) * kv_dim + kv_head * head_dim_;
      for (int d = 0; d < head_dim_; ++d) out[d] += p * vt[d];
    }
  }
  std::vector<double> projected(h);
  linear(layer.o_proj, attended.data(), q_dim, hidden_, projected.data());
  for (size_t i = 0; i < h; ++i) x[i] += projected[i];

  // MLP block.
  const auto inter = static_cast<size_t>(intermediate_);
  std::vector<double> gate(inter), up(inter);
  rms_norm(x.data(), layer.post_attention_norm, rms_eps_, normed.data());
  linear(layer.gate_proj, normed.data(), hidden_, intermediate_, gate.data());
  linear(layer.up_proj, normed.data(), hidden_, intermediate_, up.data());
  for (size_t i = 0; i < inter; ++i) gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
  linear(layer.down_proj, gate.data(), intermediate_, hidden_, projected.data());
  for (size_t i = 0; i < h; ++i) x[i] += projected[i];
}

std::vector<double> ReferenceLlama::final_hidden_states(ReferenceCache& cache, std::span<const int> tokens) const {
  const auto h = static_cast<size_t>(hidden_);
  cache.keys.resize(layers_.size());
  cache.values.resize(layers_.size());
  std::vector<double> result(tokens.size() * h);
  std::vector<double> x(h);
  for (size_t n = 0; n < tokens.size(); ++n) {
    const int token = tokens[n];
    if (token < 0 || token >= vocab_) throw std::invalid_argument("reference: token id out of range");
    const float* row = embed_tokens_.data() + static_cast<size_t>(token) * h;
    for (size_t i = 0; i < h; ++i) x[i] = row[i];
    for (size_t l = 0; l < layers_.size(); ++l) {
      decoder_layer(layers_[l], cache.keys[l], cache.values[l], cache.position, x);
    }
    rms_norm(x.data(), final_norm_, rms_eps_, result.data() + n * h);
    ++cache.position;
  }
  return result;
}

void ReferenceLlama::log_softmax_rows(
    std::span<const double> hidden,
    const std::function<void(size_t row, std::span<const double> logprobs)>& on_row) const {
  const auto h = static_cast<size_t>(hidden_);
  const auto v = static_cast<size_t>(vocab_);
  const size_t rows = hidden.size() / h;
  constexpr size_t kBlockRows = 32;  // rows computed together: one pass over lm_head per block
  constexpr size_t kTile = 8;        // rows per inner tile: accumulators that stay in registers
  std::vector<double> logits(kBlockRows * v);
  std::vector<double> transposed(h * kBlockRows);  // [dim][row]: the inner loop runs over rows

  for (size_t first = 0; first < rows; first += kBlockRows) {
    const size_t count = std::min(kBlockRows, rows - first);
    std::fill(transposed.begin(), transposed.end(), 0.0);
    for (size_t r = 0; r < count; ++r) {
      for (size_t d = 0; d < h; ++d) transposed[d * kBlockRows + r] = hidden[(first + r) * h + d];
    }
    const auto vocab_signed = static_cast<long long>(v);
#pragma omp parallel for schedule(static)
    for (long long token = 0; token < vocab_signed; ++token) {
      const double* w = lm_head_.data() + static_cast<size_t>(token) * h;
      for (size_t tile = 0; tile < count; tile += kTile) {
        double acc[kTile] = {};
        for (size_t d = 0; d < h; ++d) {
          const double wd = w[d];
          const double* column = transposed.data() + d * kBlockRows + tile;
          for (size_t r = 0; r < kTile; ++r) acc[r] += wd * column[r];
        }
        for (size_t r = 0; r < kTile && tile + r < count; ++r) {
          logits[(tile + r) * v + static_cast<size_t>(token)] = acc[r];
        }
      }
    }
    const auto count_signed = static_cast<long long>(count);
#pragma omp parallel for schedule(static)
    for (long long r = 0; r < count_signed; ++r) {
      double* row = logits.data() + static_cast<size_t>(r) * v;
      const double max_logit = *std::max_element(row, row + v);
      double sum = 0.0;
      for (size_t i = 0; i < v; ++i) sum += std::exp(row[i] - max_logit);
      const double log_normalizer = max_logit + std::log(sum);
      for (size_t i = 0; i < v; ++i) row[i] -= log_normalizer;
    }
    for (size_t r = 0; r < count; ++r) on_row(first + r, std::span<const double>(logits.data() + r * v, v));
  }
}

void ReferenceLlama::score(
    std::span<const int> tokens,
    const std::function<void(size_t position, std::span<const double> logprobs)>& on_position) const {
  ReferenceCache cache;
  const std::vector<double> hidden = final_hidden_states(cache, tokens);
  log_softmax_rows(hidden, on_position);
}

std::vector<std::vector<double>> ReferenceLlama::log_softmax(std::span<const int> tokens) const {
  std::vector<std::vector<double>> result(tokens.size());
  score(tokens, [&](size_t position, std::span<const double> logprobs) {
    result[position].assign(logprobs.begin(), logprobs.end());
  });
  return result;
}

std::vector<int> ReferenceLlama::greedy(std::span<const int> prompt, int max_new_tokens,
                                        std::span<const int> stop_tokens) const {
  if (prompt.empty()) throw std::invalid_argument("reference: greedy needs a non-empty prompt");
  ReferenceCache cache;
  std::vector<double> hidden = final_hidden_states(cache, prompt);
  std::vector<int> generated;
  const auto h = static_cast<size_t>(hidden_);
  for (int step = 0; step < max_new_tokens; ++step) {
    const std::span<const double> last(hidden.data() + hidden.size() - h, h);
    int best = 0;
    log_softmax_rows(last, [&](size_t, std::span<const double> logprobs) {
      best = static_cast<int>(std::max_element(logprobs.begin(), logprobs.end()) - logprobs.begin());
    });
    generated.push_back(best);
    if (std::find(stop_tokens.begin(), stop_tokens.end(), best) != stop_tokens.end()) break;
    const int next[1] = {best};
    hidden = final_hidden_states(cache, next);
  }
  return generated;
}

}  // namespace llama31::reference
