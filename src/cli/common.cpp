#include "cli/common.h"

#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "kernels/kernels.h"
#include "model_files/test_model.h"
#include "util/error.h"

namespace llama31::cli {

CLI::Validator whole_number_at_least(long long least) {
  return CLI::Validator(
      [least](std::string& input) -> std::string {
        long long value = 0;
        const char* end = input.data() + input.size();
        const auto [ptr, ec] = std::from_chars(input.data(), end, value);
        if (ec != std::errc() || ptr != end) return fmt::format("{:?} is not a whole number", input);
        if (value < least) return fmt::format("{} is less than {}", value, least);
        return {};
      },
      fmt::format(">={}", least), "whole_number_at_least");
}

CLI::Validator number_above(double bound) {
  return CLI::Validator(
      [bound](std::string& input) -> std::string {
        double value = 0;
        const char* end = input.data() + input.size();
        const auto [ptr, ec] = std::from_chars(input.data(), end, value);
        if (ec != std::errc() || ptr != end || !std::isfinite(value)) return fmt::format("{:?} is not a number", input);
        if (value <= bound) return fmt::format("{} is not more than {}", input, bound);
        return {};
      },
      fmt::format(">{}", bound), "number_above");
}

void add_model_options(CLI::App& sub, ModelOptions& options, bool with_ctx) {
  sub.add_option("-m,--model", options.model_dir,
                 "Hugging Face model folder (config.json, *.safetensors, tokenizer.json) or llama.cpp GGUF file; "
                 "default: the built-in tiny demo model");
  sub.add_option("-t,--threads", options.threads, "Threads (default: all cores)")->check(whole_number_at_least(0));
  sub.add_option("--weights", options.weights,
                 "q8_0 or q4_0: quantize the linear layers and the head to Q8_0 or Q4_0 at load (as llama.cpp's "
                 "Q8_0 / Q4_0; int8 kernels); default: run the weights as stored")
      ->check(CLI::IsMember({"q8_0", "q4_0"}));
  sub.add_flag("--no-repack", options.no_repack,
               "Run the weights in their own layout: no repacking at load (Q8_0 and Q4_0 into 16-row "
               "panels, as llama.cpp's --no-repack turns off its own); same numbers, slower");
  if (with_ctx) {
    sub.add_option("-c,--ctx-size", options.ctx_size,
                   "Context size in tokens (default: what the prompt and output need)")
        ->check(whole_number_at_least(0));
  }
}

std::filesystem::path resolve_model_dir(const ModelOptions& options) {
  if (!options.model_dir.empty()) return options.model_dir;
  std::filesystem::path cache;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
    cache = xdg;
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    cache = std::filesystem::path(home) / ".cache";
  } else {
    cache = std::filesystem::temp_directory_path();
  }
  const auto dir = cache / "llama31" / "demo-model";
  if (!std::filesystem::exists(dir / "config.json")) {
    std::fprintf(stderr, "llama31: no -m given; writing the built-in demo model (random weights) to %s\n",
                 dir.string().c_str());
    std::filesystem::create_directories(dir);
    write_test_model(dir);
  }
  return dir;
}

std::unique_ptr<LoadedModel> load_model(const ModelOptions& options) {
  const int threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  kernels::set_num_threads(std::max(1, threads));
  const auto dir = resolve_model_dir(options);
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<DType> weights;
  if (options.weights == "q8_0") weights = DType::Q8_0;
  if (options.weights == "q4_0") weights = DType::Q4_0;
  auto model = LoadedModel::load(dir, /*prefault=*/true, weights, /*repack=*/!options.no_repack);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto& c = model->config();
  std::fprintf(stderr, "llama31: loaded %s (%d layers, %.3g B parameters, %.2f GB of weights) in %.2f s, %d threads, %s\n",
               dir.string().c_str(), c.num_hidden_layers, static_cast<double>(c.parameter_count()) / 1e9,
               static_cast<double>(model->folder().weights.total_bytes()) / 1e9, secs, kernels::num_threads(),
               kernels::active_isa());
  return model;
}

int context_size(const ModelOptions& options, const LlamaConfig& config, long long needed) {
  const long long limit = config.max_position_embeddings;
  if (options.ctx_size > 0) {
    if (options.ctx_size > limit) fail("--ctx-size {} exceeds the model's limit of {} tokens", options.ctx_size, limit);
    return options.ctx_size;
  }
  return static_cast<int>(std::min(std::max(needed, 1LL), limit));
}

std::vector<TokenId> parse_id_list(const std::string& text) {
  std::vector<TokenId> ids;
  std::string item;
  auto flush = [&] {
    size_t b = item.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) {
      item.clear();
      return;
    }
    const size_t e = item.find_last_not_of(" \t\r\n");
    const std::string s = item.substr(b, e - b + 1);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != s.size() || v < 0 || v > INT32_MAX) fail("'{}' is not a token id (expected a non-negative integer)", s);
    ids.push_back(static_cast<TokenId>(v));
    item.clear();
  };
  for (char ch : text) {
    if (ch == '[' || ch == ']') continue;
    if (ch == ',') {
      flush();
    } else {
      item += ch;
    }
  }
  flush();
  if (ids.empty()) fail("no token ids given");
  return ids;
}

}  // namespace llama31::cli
