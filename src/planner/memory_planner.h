// Memory planning for Llama 3.1: weights per precision, KV cache per context and batch, training
// estimates (full fine-tuning with AdamW in mixed precision, LoRA, QLoRA) and a prediction of what a
// loaded model folder needs for inference. Pure arithmetic on LlamaConfig: no engine code.
//
// Units: GB = 1e9 bytes (weights, training, as the Llama 3.1 release writes them),
//        GiB = 2^30 bytes (KV cache: the release's KV table is in GiB although it is labelled GB).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model_files/config.h"

namespace llama31 {
struct ModelFolder;
}

namespace llama31::planner {

inline constexpr double kGB = 1e9;
inline constexpr double kGiB = 1073741824.0;

// ---- Precisions --------------------------------------------------------------------------------

enum class Precision { FP32, BF16, FP16, FP8, INT4 };

inline constexpr std::array<Precision, 5> kAllPrecisions{Precision::FP32, Precision::BF16,
                                                         Precision::FP16, Precision::FP8,
                                                         Precision::INT4};

double bytes_per_parameter(Precision precision);  // 4, 2, 2, 1, 0.5
std::string_view precision_name(Precision precision);  // "fp32", "bf16", ...
// Accepts fp32, bf16, fp16, fp8, int4 (any case); anything else is an Error naming --dtype.
Precision parse_precision(std::string_view text);

// ---- Parameters --------------------------------------------------------------------------------

struct ParameterBreakdown {
  long long embedding = 0;         // vocab x hidden
  long long attention = 0;         // q, k, v, o projections of all layers (and biases if any)
  long long mlp = 0;               // gate, up, down projections of all layers (and biases if any)
  long long norms = 0;             // two RMSNorm weights per layer plus the final norm
  long long lm_head = 0;           // 0 when tied to the embedding
  long long total() const { return embedding + attention + mlp + norms + lm_head; }
  long long decoder_linear() const { return attention + mlp; }  // what LoRA/QLoRA quantize and adapt
};

int effective_head_dim(const LlamaConfig& config);  // head_dim, or hidden / heads when 0
ParameterBreakdown count_parameters(const LlamaConfig& config);

// ---- Published sizes and the release's figures --------------------------------------------------

enum class PublishedSize { B8, B70, B405 };

// The Hugging Face release blog "Llama 3.1 - 405B, 70B & 8B with multilinguality and long context".
struct ReleaseFigures {
  double nominal_billions = 0;            // 8, 70, 405: the size the release multiplies
  double weights_fp16_gb = 0, weights_fp8_gb = 0, weights_int4_gb = 0;
  std::array<double, 3> kv_fp16 = {};     // its "1k / 16k / 128k" columns, printed "GB", really GiB
  double full_finetune_gb = 0, lora_gb = 0, qlora_gb = 0;
};
// Whether a figure the release printed (2-3 decimals) is `exact_gib` rounded.
bool release_kv_agrees(double release_gib, double exact_gib);
// The token counts behind the release's "1k / 16k / 128k" KV columns.
inline constexpr std::array<long long, 3> kReleaseKvContexts{1024, 16000, 128000};

LlamaConfig published_config(PublishedSize size);  // the real config.json values, built in
ReleaseFigures release_figures(PublishedSize size);
std::string_view published_name(PublishedSize size);  // "Llama 3.1 8B"

// A model to plan for: a published size ("8b", "70b", "405b", any case) or a folder whose
// config.json is read. Anything else is an Error naming the value.
struct ModelChoice {
  std::string label;                          // "Llama 3.1 8B" or the folder path
  LlamaConfig config;
  std::optional<PublishedSize> published;     // set for the built-in sizes
  std::optional<std::uint64_t> stored_weight_bytes;  // safetensors bytes when DIR holds weights
};
ModelChoice resolve_model(std::string_view model_argument);

// ---- Weights and KV cache -----------------------------------------------------------------------

double weights_bytes(const LlamaConfig& config, Precision precision);

// K and V of every layer for every token: 2 x layers x kv_heads x head_dim values per token.
long long kv_values_per_token(const LlamaConfig& config);
double kv_cache_bytes(const LlamaConfig& config, long long context_tokens, long long batch,
                      double bytes_per_element);

// ---- Inference ----------------------------------------------------------------------------------

// Scratch memory of one forward pass of the engine (engine/llama_model.cpp) over `tokens` tokens per
// sequence of the batch: per-token buffers (residual, norm, projection, q, attention output, k, v,
// gate, up, activation, rope tables), one row of attention scores over `context` positions per
// thread, and logits for `logit_rows` tokens (1 when generating, every token when scoring).
double inference_scratch_bytes(const LlamaConfig& config, long long context, long long batch,
                               long long tokens, double bytes_per_element, long long logit_rows = 1,
                               int threads = 2);

struct InferenceMemoryOptions {
  long long context = 4096;           // tokens held in the KV cache per sequence
  long long batch = 1;
  long long tokens_per_forward = 512;  // prompt chunk processed at once (capped at context)
  double kv_bytes_per_element = 4;     // fp32 KV cache
  double activation_bytes_per_element = 4;  // fp32 activations
  long long logit_rows = 1;                 // tokens per forward whose logits are kept
  int threads = 2;
};

// Peak memory of loading a tokenizer.json: nlohmann's parse tree of the file plus the BPE tables,
// measured at 7 times the file's size for the Llama 3 tokenizer (9.1 MB file, 64 MB peak).
constexpr double kTokenizerBytesPerJsonByte = 7.0;

struct InferenceMemoryEstimate {
  double weights_bytes = 0;   // as stored in the folder (or as given)
  double kv_cache_bytes = 0;
  double scratch_bytes = 0;
  double tokenizer_bytes = 0;  // only for a model: kTokenizerBytesPerJsonByte * its tokenizer.json's size
  double total_bytes() const { return weights_bytes + kv_cache_bytes + scratch_bytes + tokenizer_bytes; }
};

InferenceMemoryEstimate predict_inference_memory(const LlamaConfig& config,
                                                 double stored_weight_bytes,
                                                 const InferenceMemoryOptions& options);
// What a loaded folder should need: its safetensors bytes as stored + fp32 KV cache + scratch +
// the tokenizer.
// For comparing with the resident memory (RSS) of the engine running it.
InferenceMemoryEstimate predict_folder_inference_memory(const ModelFolder& folder,
                                                        const InferenceMemoryOptions& options = {});
InferenceMemoryEstimate predict_folder_inference_memory(const std::filesystem::path& dir,
                                                        const InferenceMemoryOptions& options = {});

// ---- Training -----------------------------------------------------------------------------------

// Every number the training estimates use; the report prints them all.
struct TrainingAssumptions {
  long long sequence_length = 2048;  // tokens per sequence
  long long micro_batch = 1;         // sequences per step on the device
  // Full fine-tuning, AdamW in mixed precision (ZeRO paper accounting, no sharding, no offload).
  double weight_bytes = 2;           // bf16 weights used in forward/backward
  double gradient_bytes = 2;         // bf16 gradients
  double master_weight_bytes = 4;    // fp32 master copy of the weights
  double optimizer_state_bytes = 8;  // AdamW m and v in fp32
  // LoRA / QLoRA.
  int lora_rank = 16;
  std::vector<std::string> lora_targets{"q_proj", "k_proj", "v_proj", "o_proj",
                                        "gate_proj", "up_proj", "down_proj"};
  double lora_frozen_bytes = 2;       // LoRA: frozen base weights in bf16
  double qlora_block_size = 64;       // NF4 block size
  double qlora_frozen_bytes = 0.5 + 1.0 / 64 + 4.0 / (64 * 256);  // NF4 + double-quantized absmax
  double adapter_bytes = 16;  // per trainable adapter parameter: fp32 weight, grad, AdamW m and v
  // Activations: gradient checkpointing at every decoder layer.
  double activation_bytes = 2;        // bf16 activations
  double logits_bytes = 10;           // per vocab entry per token: bf16 logits, fp32 copy, fp32 grad
};

struct MemoryItem {
  std::string name;
  double bytes = 0;
  std::string assumption;
};

struct TrainingEstimate {
  std::string method;            // "full", "lora", "qlora"
  std::string title;             // "Full fine-tuning (AdamW, mixed precision)"
  std::vector<MemoryItem> items;
  long long trainable_parameters = 0;
  std::optional<double> release_gb;  // the release's figure for published sizes
  std::string comparison;             // why ours differs from the release
  double total_bytes() const;
};

long long lora_parameters(const LlamaConfig& config, const TrainingAssumptions& assumptions);
MemoryItem training_activations(const LlamaConfig& config, const TrainingAssumptions& assumptions);
std::vector<TrainingEstimate> estimate_training(const LlamaConfig& config,
                                                const TrainingAssumptions& assumptions,
                                                std::optional<PublishedSize> published);

// ---- The `llama31 memory` report ----------------------------------------------------------------

struct MemoryRequest {
  std::string model = "8b";
  std::string dtype = "bf16";
  std::vector<std::string> contexts;  // empty: the release's 1,024 / 16,000 / 128,000 columns
  std::string batch = "1";
};

// A positive whole number of at most `max`; otherwise an Error naming `what` and the text.
long long parse_positive_count(std::string_view text, std::string_view what, long long max);

struct WeightsRow {
  Precision precision;
  double bytes = 0;
  std::optional<double> release_gb;
};

struct KvRow {
  long long context = 0;
  double bytes_16bit = 0;   // for the whole batch
  double bytes_8bit = 0;
  std::optional<double> release_gib;     // the release's figure when this is one of its columns
  double inference_total_bytes = 0;      // weights at the chosen dtype + 16-bit KV + scratch
  double scratch_bytes = 0;
};

struct MemoryReport {
  ModelChoice model;
  ParameterBreakdown parameters;
  Precision dtype = Precision::BF16;
  long long batch = 1;
  std::vector<WeightsRow> weights;
  std::vector<KvRow> kv_cache;
  TrainingAssumptions training_assumptions;
  std::vector<TrainingEstimate> training;
  std::vector<std::string> notes;  // e.g. the release's doubled 405B KV figures
};

MemoryReport plan_memory(const MemoryRequest& request);
// 8030261248 -> "8,030,261,248".
std::string group_digits(long long value);
std::string format_report_text(const MemoryReport& report);
nlohmann::json report_to_json(const MemoryReport& report);

}  // namespace llama31::planner
