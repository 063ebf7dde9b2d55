// Options and helpers shared by the subcommands that run a model.
#pragma once

#include <CLI/CLI.hpp>

#include <filesystem>
#include <memory>
#include <string>

#include "engine/generator.h"

namespace llama31::cli {

struct ModelOptions {
  std::string model_dir;  // empty: the built-in demo model
  int threads = 0;        // 0: all cores
  int ctx_size = 0;       // 0: what the command needs, up to the model's limit
  std::string weights;    // "q8_0" or "q4_0": re-store the matrices so at load; empty: as stored
  bool no_repack = false; // keep the weights' own layout (no repacking for the kernels at load)
};

// Adds -m/--model, -t/--threads, --weights and (when with_ctx) -c/--ctx-size.
void add_model_options(CLI::App& sub, ModelOptions& options, bool with_ctx = true);

// The folder to load: the given one, or the demo model (written on first use to
// $XDG_CACHE_HOME/llama31/demo-model or ~/.cache/llama31/demo-model).
std::filesystem::path resolve_model_dir(const ModelOptions& options);

// Applies the thread count and loads the model, printing one status line to stderr.
std::unique_ptr<LoadedModel> load_model(const ModelOptions& options);

// The context size to allocate: options.ctx_size if set, else `needed`; checked against the model.
int context_size(const ModelOptions& options, const LlamaConfig& config, long long needed);

// Checks of numeric options with readable messages ("--n-depth: -5 is less than 0"). CLI11's own
// NonNegativeNumber and PositiveNumber print the largest double as their upper bound, and PositiveNumber
// rejects 0 as "not in range 0.000000 to ...".
CLI::Validator whole_number_at_least(long long least);  // an integer option: value >= least
CLI::Validator number_above(double bound);              // a real option: value > bound

// Parses "1,2,3" or "[1, 2, 3]" into token ids; errors name the bad entry.
std::vector<TokenId> parse_id_list(const std::string& text);

}  // namespace llama31::cli
