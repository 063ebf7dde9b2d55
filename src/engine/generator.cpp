#include "engine/generator.h"
#include "engine/weight_packing.h"

#include "model_files/gguf_model.h"
#include "model_files/quantized_weights.h"

#include <algorithm>

#include "util/error.h"

namespace llama31 {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The tokenizer of a GGUF file's tokenizer.ggml.* keys; `name` names the file in errors.
Tokenizer gguf_tokenizer(const GgufFile& file, const std::string& name) {
  GgufTokenizerParts parts = gguf_tokenizer_parts(file);
  return Tokenizer::from_tables(parts.rest, std::move(parts.vocab), parts.merges, gguf_tokenizer_config_document(file),
                                name + " (tokenizer.ggml.*)", name);
}
}  // namespace

Tokenizer load_tokenizer(const ModelFolder& folder) {
  if (folder.gguf) return gguf_tokenizer(*folder.gguf, folder.dir.string());
  const bool has_config = std::filesystem::is_regular_file(folder.tokenizer_config_json);
  return Tokenizer::from_files(folder.tokenizer_json, has_config ? folder.tokenizer_config_json : std::filesystem::path());
}

Tokenizer load_tokenizer(const std::filesystem::path& model_path) {
  if (is_gguf_file(model_path)) return gguf_tokenizer(GgufFile(model_path), model_path.string());
  if (!std::filesystem::exists(model_path)) fail("model folder {} does not exist", model_path.string());
  if (!std::filesystem::is_directory(model_path)) {
    fail("{} is neither a model folder nor a GGUF file", model_path.string());
  }
  const auto tokenizer_json = model_path / "tokenizer.json";
  if (!std::filesystem::is_regular_file(tokenizer_json)) fail("{} has no tokenizer.json", model_path.string());
  const auto config_json = model_path / "tokenizer_config.json";
  return Tokenizer::from_files(tokenizer_json,
                               std::filesystem::is_regular_file(config_json) ? config_json : std::filesystem::path());
}

std::unique_ptr<LoadedModel> LoadedModel::load(const std::filesystem::path& dir, bool prefault,
                                               std::optional<DType> weights, bool repack) {
  // Re-storing (--weights) starts from dense matrices: an int4 checkpoint's Q4_0 form leaves out its offsets.
  ModelFolder folder = ModelFolder::open(dir, weights ? QuantizedForm::Dense : QuantizedForm::Runtime);
  if (prefault) folder.weights.prefault(/*show_progress=*/true);
  if (weights) quantize_weights_in_memory(folder.weights, folder.config, *weights, /*show_progress=*/true);
  if (repack) pack_weights_for_kernels(folder.weights, folder.config, /*show_progress=*/true);
  Tokenizer tokenizer = load_tokenizer(folder);
  return std::unique_ptr<LoadedModel>(new LoadedModel(std::move(folder), std::move(tokenizer)));
}

LoadedModel::LoadedModel(ModelFolder folder, Tokenizer tokenizer)
    : folder_(std::move(folder)), tokenizer_(std::move(tokenizer)) {
  if (tokenizer_.vocab_size() > folder_.config.vocab_size) {
    fail("{}: the tokenizer has {} tokens but config.json's vocab_size is {}", folder_.dir.string(),
         tokenizer_.vocab_size(), folder_.config.vocab_size);
  }
  model_ = std::make_unique<LlamaModel>(folder_);
  for (int id : folder_.generation.eos_token_ids) stop_ids_.push_back(id);
  for (int id : folder_.config.eos_token_ids) stop_ids_.push_back(id);
  std::sort(stop_ids_.begin(), stop_ids_.end());
  stop_ids_.erase(std::unique(stop_ids_.begin(), stop_ids_.end()), stop_ids_.end());
  if (folder_.config.bos_token_id) {
    bos_id_ = *folder_.config.bos_token_id;
  } else if (auto bos = tokenizer_.bos_id()) {
    bos_id_ = *bos;
  } else {
    fail("{}: no bos_token_id in config.json and no <|begin_of_text|> in the tokenizer", folder_.dir.string());
  }
}

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::ContextFull: return "context_full";
  }
  return "?";
}

std::string StopStringMatcher::push(std::string_view piece) {
  if (stopped_) return {};
  held_.append(piece);
  size_t first_stop = std::string::npos;
  for (const auto& s : stops_) {
    if (s.empty()) continue;
    first_stop = std::min(first_stop, held_.find(s));
  }
  if (first_stop != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first_stop);
    held_.clear();
    return out;
  }
  // Keep the longest suffix that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const auto& s : stops_) {
    for (size_t len = std::min(s.size() - (s.empty() ? 0 : 1), held_.size()); len > keep; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopStringMatcher::flush() {
  std::string out = stopped_ ? std::string() : held_;
  held_.clear();
  return out;
}

GenerationResult generate(const LoadedModel& model, KvCache& cache, const GenerationRequest& request,
                          const std::function<void(std::string_view)>& on_text) {
  if (request.prompt.empty()) fail("the prompt is empty");
  if (request.max_new_tokens < 0) fail("max_new_tokens must be >= 0, got {}", request.max_new_tokens);
  if (static_cast<long long>(request.prompt.size()) >= cache.capacity()) {
    fail("the prompt has {} tokens but the context holds {}; raise --ctx-size (the model allows up to {})",
         request.prompt.size(), cache.capacity(), model.config().max_position_embeddings);
  }
  GenerationResult result;
  Sampler sampler(request.sampling);
  IncrementalDecoder decoder(model.tokenizer(), /*skip_special=*/false);
  StopStringMatcher stops(request.stop_strings);
  auto emit = [&](const std::string& text) {
    if (text.empty()) return;
    result.text += text;
    if (on_text) on_text(text);
  };

  std::vector<TokenId> history = request.prompt;
  std::vector<float> logits;
  cache.clear();
  const auto t0 = std::chrono::steady_clock::now();
  model.model().forward(request.prompt, cache, Logits::Last, logits);
  result.prefill_seconds = seconds_since(t0);

  const auto t1 = std::chrono::steady_clock::now();
  result.finish = FinishReason::Length;
  for (int step = 0; step < request.max_new_tokens; ++step) {
    const TokenId next = sampler.sample(logits, history);
    result.tokens.push_back(next);
    history.push_back(next);
    if (std::find(request.stop_ids.begin(), request.stop_ids.end(), next) != request.stop_ids.end()) {
      result.finish = FinishReason::Stop;
      break;
    }
    emit(stops.push(decoder.push(next)));
    if (stops.stopped()) {
      result.finish = FinishReason::Stop;
      break;
    }
    if (step + 1 == request.max_new_tokens) break;
    if (cache.size() >= cache.capacity()) {
      result.finish = FinishReason::ContextFull;
      break;
    }
    const TokenId one[1] = {next};
    model.model().forward(one, cache, Logits::Last, logits);
  }
  if (!stops.stopped()) {
    emit(stops.push(decoder.finish()));
    emit(stops.flush());
  }
  result.decode_seconds = seconds_since(t1);
  return result;
}

}  // namespace llama31
