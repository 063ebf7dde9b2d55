// Parameter counts, weights, KV cache, inference and training memory arithmetic.
#include "planner/memory_planner.h"

#include <algorithm>
#include <filesystem>
#include <cctype>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model_files/model_folder.h"
#include "util/error.h"

namespace llama31::planner {

// ---- Precisions --------------------------------------------------------------------------------

double bytes_per_parameter(Precision precision) {
  switch (precision) {
    case Precision::FP32: return 4.0;
    case Precision::BF16: return 2.0;
    case Precision::FP16: return 2.0;
    case Precision::FP8: return 1.0;
    case Precision::INT4: return 0.5;
  }
  return 0.0;
}

std::string_view precision_name(Precision precision) {
  switch (precision) {
    case Precision::FP32: return "fp32";
    case Precision::BF16: return "bf16";
    case Precision::FP16: return "fp16";
    case Precision::FP8: return "fp8";
    case Precision::INT4: return "int4";
  }
  return "?";
}

Precision parse_precision(std::string_view text) {
  std::string name(text);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (Precision precision : kAllPrecisions) {
    if (name == precision_name(precision)) return precision;
  }
  fail("--dtype '{}' is not a known precision: expected one of fp32, bf16, fp16, fp8, int4", text);
}

long long parse_positive_count(std::string_view text, std::string_view what, long long max) {
  const bool digits_only = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return c >= '0' && c <= '9';
  });
  if (!digits_only) fail("{} must be a positive whole number, got '{}'", what, text);
  long long value = 0;
  for (char c : text) {
    value = value * 10 + (c - '0');
    if (value > max) fail("{} {} is too large: at most {}", what, text, max);
  }
  if (value == 0) fail("{} must be at least 1, got '{}'", what, text);
  return value;
}

// ---- Parameters --------------------------------------------------------------------------------

int effective_head_dim(const LlamaConfig& config) {
  if (config.head_dim > 0) return config.head_dim;
  if (config.num_attention_heads <= 0) {
    fail("config: num_attention_heads must be positive, got {}", config.num_attention_heads);
  }
  return config.hidden_size / config.num_attention_heads;
}

ParameterBreakdown count_parameters(const LlamaConfig& config) {
  const long long hidden = config.hidden_size;
  const long long inter = config.intermediate_size;
  const long long layers = config.num_hidden_layers;
  const long long head_dim = effective_head_dim(config);
  const long long q_dim = config.num_attention_heads * head_dim;
  const long long kv_dim = config.num_key_value_heads * head_dim;
  ParameterBreakdown p;
  p.embedding = static_cast<long long>(config.vocab_size) * hidden;
  long long attention_per_layer = hidden * q_dim + 2 * hidden * kv_dim + q_dim * hidden;
  if (config.attention_bias) attention_per_layer += q_dim + 2 * kv_dim + hidden;
  long long mlp_per_layer = 3 * hidden * inter;
  if (config.mlp_bias) mlp_per_layer += 2 * inter + hidden;
  p.attention = layers * attention_per_layer;
  p.mlp = layers * mlp_per_layer;
  p.norms = layers * 2 * hidden + hidden;
  p.lm_head = config.tie_word_embeddings ? 0 : p.embedding;
  return p;
}

// ---- Weights and KV cache -----------------------------------------------------------------------

double weights_bytes(const LlamaConfig& config, Precision precision) {
  return static_cast<double>(count_parameters(config).total()) * bytes_per_parameter(precision);
}

long long kv_values_per_token(const LlamaConfig& config) {
  return 2LL * config.num_hidden_layers * config.num_key_value_heads * effective_head_dim(config);
}

double kv_cache_bytes(const LlamaConfig& config, long long context_tokens, long long batch,
                      double bytes_per_element) {
  return static_cast<double>(kv_values_per_token(config)) * static_cast<double>(context_tokens) *
         static_cast<double>(batch) * bytes_per_element;
}

// ---- Inference ----------------------------------------------------------------------------------

double inference_scratch_bytes(const LlamaConfig& config, long long context, long long batch,
                               long long tokens, double bytes_per_element, long long logit_rows,
                               int threads) {
  const double head_dim = effective_head_dim(config);
  const double q_dim = config.num_attention_heads * head_dim;
  const double kv_dim = config.num_key_value_heads * head_dim;
  const double per_token = 3.0 * config.hidden_size + 2.0 * q_dim + 2.0 * kv_dim +
                           3.0 * config.intermediate_size + head_dim;
  const double in_flight = static_cast<double>(batch) * static_cast<double>(std::min(tokens, context));
  const double logits = static_cast<double>(batch) * static_cast<double>(std::min(logit_rows, tokens)) *
                        static_cast<double>(config.vocab_size);
  const double attention_rows = static_cast<double>(threads) * static_cast<double>(context);
  return (in_flight * per_token + logits + attention_rows) * bytes_per_element;
}

InferenceMemoryEstimate predict_inference_memory(const LlamaConfig& config,
                                                 double stored_weight_bytes,
                                                 const InferenceMemoryOptions& options) {
  if (options.context < 1 || options.batch < 1 || options.tokens_per_forward < 1) {
    fail("inference memory: context ({}), batch ({}) and tokens_per_forward ({}) must be positive",
         options.context, options.batch, options.tokens_per_forward);
  }
  InferenceMemoryEstimate estimate;
  estimate.weights_bytes = stored_weight_bytes;
  estimate.kv_cache_bytes =
      kv_cache_bytes(config, options.context, options.batch, options.kv_bytes_per_element);
  estimate.scratch_bytes =
      inference_scratch_bytes(config, options.context, options.batch, options.tokens_per_forward,
                              options.activation_bytes_per_element, options.logit_rows, options.threads);
  return estimate;
}

InferenceMemoryEstimate predict_folder_inference_memory(const ModelFolder& folder,
                                                        const InferenceMemoryOptions& options) {
  auto estimate = predict_inference_memory(folder.config, static_cast<double>(folder.weights.total_bytes()),
                                           options);
  if (folder.is_gguf()) {
    // The tokenizer is built from the same document a tokenizer.json holds, translated from the GGUF
    // file's tokenizer.ggml.* arrays. That document written compactly is 2/3 of the indented file
    // (Llama 3.1's: 6,082,681 vs 9,085,657 bytes), so it is scaled back to the file's measure.
    constexpr double kIndentedPerCompactByte = 9085657.0 / 6082681.0;
    const double compact_bytes = static_cast<double>(folder.tokenizer_document().dump().size());
    estimate.tokenizer_bytes = kTokenizerBytesPerJsonByte * kIndentedPerCompactByte * compact_bytes;
    return estimate;
  }
  std::error_code ec;
  const auto json_bytes = std::filesystem::file_size(folder.tokenizer_json, ec);
  if (!ec) estimate.tokenizer_bytes = kTokenizerBytesPerJsonByte * static_cast<double>(json_bytes);
  return estimate;
}

InferenceMemoryEstimate predict_folder_inference_memory(const std::filesystem::path& dir,
                                                        const InferenceMemoryOptions& options) {
  return predict_folder_inference_memory(ModelFolder::open(dir), options);
}

// ---- Training -----------------------------------------------------------------------------------

double TrainingEstimate::total_bytes() const {
  double total = 0;
  for (const auto& item : items) total += item.bytes;
  return total;
}

long long lora_parameters(const LlamaConfig& config, const TrainingAssumptions& assumptions) {
  const long long hidden = config.hidden_size;
  const long long inter = config.intermediate_size;
  const long long head_dim = effective_head_dim(config);
  const long long q_dim = config.num_attention_heads * head_dim;
  const long long kv_dim = config.num_key_value_heads * head_dim;
  long long in_plus_out = 0;  // a rank-r adapter on an in x out matrix has r * (in + out) parameters
  for (const auto& target : assumptions.lora_targets) {
    if (target == "q_proj") in_plus_out += hidden + q_dim;
    else if (target == "k_proj" || target == "v_proj") in_plus_out += hidden + kv_dim;
    else if (target == "o_proj") in_plus_out += q_dim + hidden;
    else if (target == "gate_proj" || target == "up_proj" || target == "down_proj")
      in_plus_out += hidden + inter;
    else fail("LoRA target '{}' is not a Llama linear layer (q_proj, k_proj, v_proj, o_proj, "
              "gate_proj, up_proj, down_proj)", target);
  }
  return static_cast<long long>(config.num_hidden_layers) * assumptions.lora_rank * in_plus_out;
}

MemoryItem training_activations(const LlamaConfig& config, const TrainingAssumptions& a) {
  const double tokens = static_cast<double>(a.sequence_length) * static_cast<double>(a.micro_batch);
  const double head_dim = effective_head_dim(config);
  const double q_dim = config.num_attention_heads * head_dim;
  const double kv_dim = config.num_key_value_heads * head_dim;
  const double hidden = config.hidden_size;
  // Saved for backward inside one layer: attention (input, norm out, q, k, v, rotated q and k,
  // attention out) and MLP (input, norm out, gate, up, silu(gate), product).
  const double layer_values_per_token =
      4.0 * hidden + 3.0 * q_dim + 3.0 * kv_dim + 4.0 * config.intermediate_size;
  const double checkpoints = config.num_hidden_layers * tokens * hidden * a.activation_bytes;
  const double one_layer = 2.0 * tokens * layer_values_per_token * a.activation_bytes;
  const double logits = tokens * config.vocab_size * a.logits_bytes;
  MemoryItem item;
  item.name = "activations";
  item.bytes = checkpoints + one_layer + logits;
  item.assumption = fmt::format(
      "{} tokens ({} x {}), gradient checkpointing at every layer: layer inputs kept "
      "({:.2f} GB at {} B), one layer recomputed with its gradients "
      "(2 x {:.0f} values/token = {:.2f} GB), logits {} B per vocab entry per token ({:.2f} GB); "
      "flash attention (no seq x seq scores), no framework/CUDA overhead",
      group_digits(static_cast<long long>(tokens)), a.micro_batch, a.sequence_length,
      checkpoints / kGB,
      a.activation_bytes, layer_values_per_token, one_layer / kGB, a.logits_bytes, logits / kGB);
  return item;
}

namespace {

std::string targets_text(const TrainingAssumptions& a) {
  std::string out;
  for (const auto& t : a.lora_targets) out += (out.empty() ? "" : ", ") + t;
  return out;
}

void add_adapter_items(TrainingEstimate& estimate, long long adapters,
                       const TrainingAssumptions& a) {
  const double n = static_cast<double>(adapters);
  const std::string where = fmt::format("rank {} on {} of every layer: {} parameters", a.lora_rank,
                                        targets_text(a), group_digits(adapters));
  estimate.items.push_back({"adapters + grads + AdamW", n * a.adapter_bytes,
                            fmt::format("{}; {} B each (fp32 weight 4, grad 4, AdamW m 4, v 4)",
                                        where, a.adapter_bytes)});
}

std::string compare_text(double ours_bytes, double release_gb, const std::string& reason) {
  const double ours = ours_bytes / kGB;
  std::string text = fmt::format("ours {:.0f} GB vs release {:.0f} GB ({:+.0f}%): {}", ours,
                                 release_gb, 100.0 * (ours - release_gb) / release_gb, reason);
  if (ours < release_gb) {
    text += fmt::format("; the release's figure keeps about {:.0f} GB more, room for framework "
                        "buffers, longer sequences or larger batches", release_gb - ours);
  }
  return text;
}

}  // namespace

std::vector<TrainingEstimate> estimate_training(const LlamaConfig& config,
                                                const TrainingAssumptions& a,
                                                std::optional<PublishedSize> published) {
  if (a.sequence_length < 1 || a.micro_batch < 1 || a.lora_rank < 1) {
    fail("training assumptions: sequence_length ({}), micro_batch ({}) and lora_rank ({}) must be "
         "positive", a.sequence_length, a.micro_batch, a.lora_rank);
  }
  const ParameterBreakdown params = count_parameters(config);
  const double p = static_cast<double>(params.total());
  const MemoryItem activations = training_activations(config, a);
  const long long adapters = lora_parameters(config, a);
  std::optional<ReleaseFigures> release;
  if (published) release = release_figures(*published);

  TrainingEstimate full;
  full.method = "full";
  full.title = "Full fine-tuning (AdamW, mixed precision)";
  full.trainable_parameters = params.total();
  full.items = {
      {"weights", p * a.weight_bytes, fmt::format("bf16, {} B/param", a.weight_bytes)},
      {"gradients", p * a.gradient_bytes, fmt::format("bf16, {} B/param", a.gradient_bytes)},
      {"fp32 master weights", p * a.master_weight_bytes,
       fmt::format("{} B/param", a.master_weight_bytes)},
      {"AdamW states", p * a.optimizer_state_bytes,
       fmt::format("m and v in fp32, {} B/param", a.optimizer_state_bytes)},
      activations};

  TrainingEstimate lora;
  lora.method = "lora";
  lora.title = fmt::format("LoRA (rank {}, bf16 base)", a.lora_rank);
  lora.trainable_parameters = adapters;
  lora.items = {{"frozen base weights", p * a.lora_frozen_bytes,
                 fmt::format("bf16, {} B/param, no gradients or optimizer states",
                             a.lora_frozen_bytes)}};
  add_adapter_items(lora, adapters, a);
  lora.items.push_back(activations);

  TrainingEstimate qlora;
  qlora.method = "qlora";
  qlora.title = fmt::format("QLoRA (rank {}, NF4 base)", a.lora_rank);
  qlora.trainable_parameters = adapters;
  const double kept = static_cast<double>(params.embedding + params.lm_head + params.norms);
  qlora.items = {
      {"frozen linear layers (NF4)", static_cast<double>(params.decoder_linear()) * a.qlora_frozen_bytes,
       fmt::format("{:.4f} B/param: 4-bit NF4 + 8-bit absmax per {:.0f}-weight block + fp32 "
                   "constant per 256 blocks (double quantization)",
                   a.qlora_frozen_bytes, a.qlora_block_size)},
      {"embeddings, lm_head, norms", kept * a.lora_frozen_bytes,
       fmt::format("kept in bf16 ({} B/param), as bitsandbytes leaves them", a.lora_frozen_bytes)}};
  add_adapter_items(qlora, adapters, a);
  qlora.items.push_back(activations);

  if (release) {
    full.release_gb = release->full_finetune_gb;
    lora.release_gb = release->lora_gb;
    qlora.release_gb = release->qlora_gb;
    const double eight_bytes = p * 8.0 / kGB;
    full.comparison = compare_text(
        full.total_bytes(), release->full_finetune_gb,
        fmt::format("the release's figure is about {:.1f} B/param, close to 8 B/param ({:.0f} GB: "
                    "bf16 weights + bf16 grads + AdamW m and v in bf16) with no fp32 master "
                    "weights, no fp32 optimizer states and no activations; mixed-precision AdamW "
                    "as assumed here needs 16 B/param ({:.0f} GB) before activations",
                    release->full_finetune_gb * kGB / p, eight_bytes, p * 16.0 / kGB));
    const double lora_static = (p * a.lora_frozen_bytes) / kGB;
    lora.comparison = compare_text(
        lora.total_bytes(), release->lora_gb,
        fmt::format("the frozen bf16 weights alone are {:.0f} GB; ours adds adapters with their "
                    "AdamW states ({:.1f} GB) and activations ({:.1f} GB) at the assumed sequence",
                    lora_static, static_cast<double>(adapters) * a.adapter_bytes / kGB,
                    activations.bytes / kGB));
    const double qlora_static = (qlora.items[0].bytes + qlora.items[1].bytes) / kGB;
    qlora.comparison = compare_text(
        qlora.total_bytes(), release->qlora_gb,
        fmt::format("the frozen NF4 model (bf16 embeddings and head) is {:.1f} GB; ours adds "
                    "adapters with AdamW states ({:.1f} GB) and activations ({:.1f} GB)",
                    qlora_static, static_cast<double>(adapters) * a.adapter_bytes / kGB,
                    activations.bytes / kGB));
  }
  return {full, lora, qlora};
}

// ---- The report ---------------------------------------------------------------------------------

MemoryReport plan_memory(const MemoryRequest& request) {
  MemoryReport report;
  report.dtype = parse_precision(request.dtype);
  report.batch = parse_positive_count(request.batch, "--batch", 1 << 20);
  report.model = resolve_model(request.model);
  const LlamaConfig& config = report.model.config;
  report.parameters = count_parameters(config);

  std::optional<ReleaseFigures> release;
  if (report.model.published) release = release_figures(*report.model.published);

  for (Precision precision : kAllPrecisions) {
    WeightsRow row{precision, weights_bytes(config, precision), std::nullopt};
    if (release) {
      if (precision == Precision::FP16 || precision == Precision::BF16) {
        row.release_gb = release->weights_fp16_gb;
      } else if (precision == Precision::FP8) {
        row.release_gb = release->weights_fp8_gb;
      } else if (precision == Precision::INT4) {
        row.release_gb = release->weights_int4_gb;
      }
    }
    report.weights.push_back(row);
  }

  std::vector<long long> contexts;
  const long long max_context =
      config.max_position_embeddings > 0 ? config.max_position_embeddings : (1LL << 24);
  for (const auto& text : request.contexts) {
    const long long context = parse_positive_count(text, "--context", 1LL << 40);
    if (context > max_context) {
      fail("--context {} exceeds max_position_embeddings {} of {}", context, max_context,
           report.model.label);
    }
    contexts.push_back(context);
  }
  if (contexts.empty()) {
    for (long long context : kReleaseKvContexts) {
      if (context <= max_context) contexts.push_back(context);
    }
  }
  constexpr long long kPromptChunk = 512;
  const double weights_at_dtype = weights_bytes(config, report.dtype);
  for (long long context : contexts) {
    KvRow row;
    row.context = context;
    row.bytes_16bit = kv_cache_bytes(config, context, report.batch, 2.0);
    row.bytes_8bit = kv_cache_bytes(config, context, report.batch, 1.0);
    row.scratch_bytes = inference_scratch_bytes(config, context, report.batch, kPromptChunk, 2.0);  // logits of the last token
    row.inference_total_bytes = weights_at_dtype + row.bytes_16bit + row.scratch_bytes;
    if (release && report.batch == 1) {
      for (size_t i = 0; i < kReleaseKvContexts.size(); ++i) {
        if (kReleaseKvContexts[i] == context) row.release_gib = release->kv_fp16[i];
      }
    }
    report.kv_cache.push_back(row);
  }

  const long long train_sequence = request.contexts.empty() ? 2048 : contexts.front();
  report.training_assumptions.sequence_length = train_sequence;
  report.training_assumptions.micro_batch = report.batch;
  report.training = estimate_training(config, report.training_assumptions, report.model.published);

  if (report.model.published == PublishedSize::B405 && release) {
    std::string right, theirs;
    for (size_t i = 0; i < kReleaseKvContexts.size(); ++i) {
      const double gib = kv_cache_bytes(config, kReleaseKvContexts[i], 1, 2.0) / kGiB;
      right += fmt::format("{}{:.3f}", i ? " / " : "", gib);
      theirs += fmt::format("{}{}", i ? " / " : "", release->kv_fp16[i]);
    }
    report.notes.push_back(fmt::format(
        "The release's 405B KV cache figures ({} GiB for 1k / 16k / 128k) are twice what 126 "
        "layers x 8 KV heads x 128 dims x 2 B give; the right 16-bit figures are {} GiB "
        "(the release's would need 4-byte elements or 252 layers).",
        theirs, right));
  }
  if (release) {
    report.notes.push_back(
        "The release labels its KV cache figures GB but they are GiB (2^30 bytes), for 1,024 / "
        "16,000 / 128,000 tokens; its weights and training figures are GB (1e9 bytes) of the "
        "nominal 8 / 70 / 405 B parameters.");
  }
  return report;
}

}  // namespace llama31::planner
