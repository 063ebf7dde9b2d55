#include "engine/awq_scaling.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <string>

#include "engine/kv_cache.h"
#include "engine/llama_model.h"
#include "kernels/kernels.h"
#include "model_files/quantized_weights.h"
#include "util/error.h"
#include "util/progress.h"

namespace llama31 {
namespace {

// One input shared by linear layers: its activation statistics and a sample of its rows.
struct InputGroup {
  std::vector<std::string> weights;  // the linear layers that read it
  std::string previous;              // what produces it: a norm (1-D) or up_proj (its rows)
  int width = 0;
  std::vector<double> abs_sum;
  long long rows_seen = 0;
  std::vector<float> samples;  // sample_rows x width
  int sample_rows = 0;
};

// Rows of x times the transposed [out][width] f32 matrix w.
std::vector<float> times_transposed(const std::vector<float>& x, int rows, const std::vector<float>& w, int out,
                                    int width) {
  std::vector<float> y(static_cast<size_t>(rows) * out);
  kernels::matmul_gemm(x.data(), rows, w.data(), DType::F32, out, width, y.data());
  return y;
}

double squared_error(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return sum;
}

// s = mean|x|^alpha, normalized so that max(s) * min(s) = 1 (as AutoAWQ does).
std::vector<float> scales_for(const std::vector<double>& mean_abs, double alpha) {
  std::vector<float> s(mean_abs.size());
  for (size_t c = 0; c < s.size(); ++c) s[c] = static_cast<float>(std::max(std::pow(mean_abs[c], alpha), 1e-4));
  const auto [lo, hi] = std::minmax_element(s.begin(), s.end());
  const float norm = std::sqrt(*lo * *hi);
  for (float& v : s) v /= norm;
  return s;
}

std::vector<float> scaled_columns(std::vector<float> w, const std::vector<float>& s) {
  const size_t width = s.size();
  for (size_t i = 0; i < w.size(); ++i) w[i] *= s[i % width];
  return w;
}

// The tensor re-stored in its own dtype (as AutoAWQ scales in the checkpoint's f16; memory stays as it was).
void store(TensorStore& weights, const TensorView& like, const std::vector<float>& values) {
  const DType dtype = like.dtype;
  std::vector<std::byte> bytes(values.size() * dtype_size(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::F32) {
      std::memcpy(bytes.data() + 4 * i, &values[i], 4);
    } else {
      const uint16_t h = dtype == DType::F16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  weights.add_owned(like.name, dtype, like.shape, std::move(bytes));
}

}  // namespace

AwqScalingReport apply_awq_scaling(ModelFolder& folder, std::span<const TokenId> calibration,
                                   const AwqScalingOptions& options, bool show_progress) {
  const LlamaConfig& c = folder.config;
  if (calibration.empty()) fail("activation-aware scaling needs calibration tokens (the calibration text is empty)");
  if (c.hidden_size % options.group_size != 0 || c.intermediate_size % options.group_size != 0) {
    fail("activation-aware scaling: hidden ({}) and intermediate ({}) sizes must be whole groups of {}", c.hidden_size,
         c.intermediate_size, options.group_size);
  }
  std::vector<InputGroup> groups;
  std::map<const TensorView*, size_t> group_of;  // the first weight of each group -> its index
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    auto add = [&](std::vector<const char*> suffixes, const char* previous, int width) {
      InputGroup g;
      for (const char* suffix : suffixes) g.weights.push_back(layer_tensor_name(l, suffix));
      g.previous = layer_tensor_name(l, previous);
      g.width = width;
      g.abs_sum.assign(static_cast<size_t>(width), 0.0);
      group_of[&folder.weights.get(g.weights.front())] = groups.size();
      groups.push_back(std::move(g));
    };
    add({"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"}, "input_layernorm.weight",
        c.hidden_size);
    add({"mlp.gate_proj.weight", "mlp.up_proj.weight"}, "post_attention_layernorm.weight", c.hidden_size);
    add({"mlp.down_proj.weight"}, "mlp.up_proj.weight", c.intermediate_size);
  }

  // Calibration: every input row adds to |x| per channel; every stride-th row is kept for the search.
  const int chunk = std::max(1, options.chunk_tokens);
  const long long stride = std::max<long long>(1, static_cast<long long>(calibration.size()) / options.max_sample_rows);
  AwqScalingReport report;
  report.calibration_tokens = static_cast<int>(calibration.size());
  {
    LlamaModel model(folder);
    long long row_index = 0;  // of the current forward pass's first row, over the whole calibration
    model.set_linear_input_observer([&](const TensorView& w, const float* rows, int count, int width) {
      const auto it = group_of.find(&w);
      if (it == group_of.end()) return;
      InputGroup& g = groups[it->second];
      for (int r = 0; r < count; ++r) {
        const float* x = rows + static_cast<size_t>(r) * width;
        for (int k = 0; k < width; ++k) g.abs_sum[static_cast<size_t>(k)] += std::fabs(x[k]);
        if ((row_index + r) % stride == 0 && g.sample_rows < options.max_sample_rows) {
          g.samples.insert(g.samples.end(), x, x + width);
          ++g.sample_rows;
        }
      }
      g.rows_seen += count;
    });
    std::optional<Progress> progress;
    if (show_progress) progress.emplace("calibrating", calibration.size(), "tokens");
    std::vector<float> no_logits;
    for (size_t at = 0; at < calibration.size(); at += static_cast<size_t>(chunk)) {
      const size_t n = std::min(static_cast<size_t>(chunk), calibration.size() - at);
      KvCache cache(c, static_cast<int>(n));
      model.forward(calibration.subspan(at, n), cache, Logits::None, no_logits);
      row_index += static_cast<long long>(n);
      if (progress) progress->update(at + n);
    }
    if (progress) progress->finish();
  }  // the model borrows the tensors replaced below

  std::optional<Progress> progress;
  if (show_progress) progress.emplace("searching AWQ scales", groups.size(), "groups");
  double alpha_sum = 0;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const InputGroup& g = groups[gi];
    std::vector<double> mean_abs(g.abs_sum.size());
    for (size_t k = 0; k < mean_abs.size(); ++k) mean_abs[k] = g.abs_sum[k] / static_cast<double>(std::max(1LL, g.rows_seen));
    std::vector<std::vector<float>> w, reference;
    std::vector<int> outs;
    for (const std::string& name : g.weights) {
      const TensorView& view = folder.weights.get(name);
      w.push_back(view.values());
      outs.push_back(static_cast<int>(view.shape[0]));
      reference.push_back(times_transposed(g.samples, g.sample_rows, w.back(), outs.back(), g.width));
    }
    double best_error = 0, best_alpha = 0;
    for (int step = 0; step <= options.grid_points; ++step) {
      const double alpha = static_cast<double>(step) / options.grid_points;
      const std::vector<float> s = scales_for(mean_abs, alpha);
      double error = 0;
      for (size_t i = 0; i < w.size(); ++i) {
        std::vector<float> q = int4_round_trip(scaled_columns(w[i], s), outs[i], g.width, options.group_size);
        for (size_t k = 0; k < q.size(); ++k) q[k] /= s[k % s.size()];
        error += squared_error(times_transposed(g.samples, g.sample_rows, q, outs[i], g.width), reference[i]);
      }
      if (step == 0) report.error_round_to_nearest += error;
      if (step == 0 || error < best_error) {
        best_error = error;
        best_alpha = alpha;
      }
    }
    report.error_scaled += best_error;
    alpha_sum += best_alpha;

    // Apply: the weights' columns times s, what produces the input divided by s.
    const std::vector<float> s = scales_for(mean_abs, best_alpha);
    for (size_t i = 0; i < w.size(); ++i) {
      // up_proj may already hold the gate/up group's scaling (re-read it: the store has the latest).
      const TensorView& current = folder.weights.get(g.weights[i]);
      store(folder.weights, current, scaled_columns(current.values(), s));
    }
    const TensorView& previous = folder.weights.get(g.previous);
    std::vector<float> p = previous.values();
    const size_t row = previous.shape.size() == 1 ? 1 : static_cast<size_t>(previous.shape[1]);
    for (size_t k = 0; k < p.size(); ++k) p[k] /= s[k / row];  // norm: one value a channel; up_proj: a row
    store(folder.weights, previous, p);
    if (progress) progress->update(gi + 1);
  }
  if (progress) progress->finish();
  report.groups = static_cast<int>(groups.size());
  report.mean_alpha = alpha_sum / static_cast<double>(std::max<size_t>(1, groups.size()));
  return report;
}

}  // namespace llama31
