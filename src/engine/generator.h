// One request's life: prefill the prompt, then sample token by token until a stop token, a stop
// string, the token limit or the end of the context; text is streamed as it becomes complete UTF-8.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/llama_model.h"
#include "engine/sampler.h"
#include "model_files/model_folder.h"
#include "tokenizer/tokenizer.h"

namespace llama31 {

// A model folder opened for inference: weights, tokenizer and the forward pass.
// The tokenizer of an opened model: its folder's tokenizer.json (and tokenizer_config.json when present),
// or its GGUF file's tokenizer.ggml.* metadata.
Tokenizer load_tokenizer(const ModelFolder& folder);
// The same for a model folder or GGUF file, without opening its weights.
Tokenizer load_tokenizer(const std::filesystem::path& model_path);

class LoadedModel {
 public:
  // Opens and validates the folder. With prefault, reads all weights into memory now (with a
  // progress bar on stderr), as llama.cpp does, instead of on first use.
  // With weights (DType::Q8_0 or DType::Q4_0), the linear layers and the head are re-stored so in memory first.
  // With repack, matrices are then repacked into the layout the active kernels run fastest
  // (engine/weight_packing.h: Q8_0 and Q4_0 into 16-row panels); the numbers stay the same.
  static std::unique_ptr<LoadedModel> load(const std::filesystem::path& dir, bool prefault = false,
                                           std::optional<DType> weights = std::nullopt, bool repack = true);

  const ModelFolder& folder() const { return folder_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  const LlamaModel& model() const { return *model_; }
  const LlamaConfig& config() const { return folder_.config; }
  // Every end token the model may emit: generation_config.json's and config.json's eos ids.
  const std::vector<TokenId>& stop_ids() const { return stop_ids_; }
  // BOS id (config's bos_token_id, else the tokenizer's <|begin_of_text|>).
  TokenId bos_id() const { return bos_id_; }

 private:
  LoadedModel(ModelFolder folder, Tokenizer tokenizer);
  ModelFolder folder_;
  Tokenizer tokenizer_;
  std::unique_ptr<LlamaModel> model_;
  std::vector<TokenId> stop_ids_;
  TokenId bos_id_ = 0;
};

enum class FinishReason { Stop, Length, ContextFull };
const char* finish_reason_name(FinishReason r);

struct GenerationRequest {
  std::vector<TokenId> prompt;  // already tokenized, BOS included if wanted
  int max_new_tokens = 128;
  SamplingParams sampling;
  std::vector<TokenId> stop_ids;          // generation ends when one is sampled (not emitted as text)
  std::vector<std::string> stop_strings;  // generation ends before the first occurrence
};

struct GenerationResult {
  std::vector<TokenId> tokens;  // generated ids, the stop token included if one ended it
  std::string text;             // the streamed text (stop string and stop token excluded)
  FinishReason finish = FinishReason::Length;
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

// Runs the request on a fresh use of cache (cleared first). on_text receives each piece of text as it
// becomes final; it may be empty.
GenerationResult generate(const LoadedModel& model, KvCache& cache, const GenerationRequest& request,
                          const std::function<void(std::string_view)>& on_text = {});

// Holds back text that might be the start of a stop string, and finds stop strings across pieces.
class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Adds a piece; returns the text now safe to emit. Sets stopped() when a stop string completed:
  // the returned text then ends right before it.
  std::string push(std::string_view piece);
  // Text still held back at the end of generation.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace llama31
