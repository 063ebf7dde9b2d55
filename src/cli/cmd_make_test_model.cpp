// llama31 make-test-model: writes a tiny Llama 3.1 checkpoint with random weights and the real tokenizer.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "model_files/test_model.h"
#include "util/error.h"

namespace llama31::cli {

namespace {

struct MakeTestModelOptions {
  std::string out_dir;
  int layers = TestModelSpec{}.num_hidden_layers;
  int hidden = TestModelSpec{}.hidden_size;
  int heads = TestModelSpec{}.num_attention_heads;
  int kv_heads = TestModelSpec{}.num_key_value_heads;
  int intermediate = 0;  // 0: 3 * hidden
  bool tied = false;
  std::string dtype = "bf16";
  uint64_t seed = TestModelSpec{}.seed;
  int shards = 1;
};

void run_make_test_model(const MakeTestModelOptions& options) {
  TestModelSpec spec;
  if (options.layers <= 0) fail("--layers ({}) must be positive", options.layers);
  if (options.heads <= 0 || options.kv_heads <= 0 || options.heads % options.kv_heads != 0) {
    fail("--kv-heads ({}) must be positive and divide --heads ({})", options.kv_heads, options.heads);
  }
  if (options.hidden <= 0 || options.hidden % (2 * options.heads) != 0) {
    fail("--hidden ({}) must be a positive multiple of {} ({} heads of even size)", options.hidden,
         2 * options.heads, options.heads);
  }
  if (options.intermediate < 0) fail("--intermediate ({}) must be positive", options.intermediate);
  if (options.shards <= 0) fail("--shards ({}) must be positive", options.shards);
  spec.num_hidden_layers = options.layers;
  spec.hidden_size = options.hidden;
  spec.num_attention_heads = options.heads;
  spec.num_key_value_heads = options.kv_heads;
  spec.head_dim = options.hidden / options.heads;
  spec.intermediate_size = options.intermediate > 0 ? options.intermediate : 3 * options.hidden;
  spec.tie_word_embeddings = options.tied;
  spec.dtype = dtype_from_option(options.dtype);
  spec.seed = options.seed;
  spec.shards = options.shards;
  const std::filesystem::path dir = std::filesystem::absolute(options.out_dir);
  write_test_model(dir, spec);
  std::printf("%s\n", dir.string().c_str());
}

}  // namespace

void add_make_test_model_command(CLI::App& app) {
  auto options = std::make_shared<MakeTestModelOptions>();
  CLI::App* sub = app.add_subcommand(
      "make-test-model",
      "Write a tiny Llama 3.1 checkpoint (random weights, GQA, llama3 rope scaling, real tokenizer) to OUTDIR");
  sub->add_option("outdir", options->out_dir, "Folder to write (created if needed)")->required();
  sub->add_option("--layers", options->layers, "Number of decoder layers")->capture_default_str();
  sub->add_option("--hidden", options->hidden, "Hidden size (a multiple of 2 x heads)")->capture_default_str();
  sub->add_option("--heads", options->heads, "Attention heads")->capture_default_str();
  sub->add_option("--kv-heads", options->kv_heads, "Key/value heads (GQA; must divide --heads)")->capture_default_str();
  sub->add_option("--intermediate", options->intermediate, "MLP size (default: 3 x hidden)");
  sub->add_flag("--tied", options->tied, "Tie the output head to the embeddings (as Llama 3.2 1B)");
  sub->add_option("--dtype", options->dtype, "Stored dtype: bf16, f16 or f32")->capture_default_str();
  sub->add_option("--seed", options->seed, "Random seed (same seed, same weights)")->capture_default_str();
  sub->add_option("--shards", options->shards, "Number of safetensors shards (>1 writes an index)")
      ->capture_default_str();
  sub->callback([options] { run_make_test_model(*options); });
}

}  // namespace llama31::cli
