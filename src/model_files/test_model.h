// Writes tiny Llama 3.1 checkpoints with random weights (GQA, llama3 rope scaling, untied head)
// plus the real Llama 3.1 tokenizer files, so tests and the demo need no download.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "model_files/config.h"
#include "util/dtype.h"

namespace llama31 {

struct TestModelSpec {
  int hidden_size = 64;
  int intermediate_size = 192;
  int num_hidden_layers = 2;
  int num_attention_heads = 8;
  int num_key_value_heads = 2;
  int head_dim = 8;  // hidden_size / num_attention_heads
  int vocab_size = 128256;
  int max_position_embeddings = 131072;
  bool tie_word_embeddings = false;
  DType dtype = DType::BF16;
  uint64_t seed = 1234;
  int shards = 1;  // >1 writes model-0000i-of-0000n.safetensors and the index
  // Target standard deviation of the logits, set through lm_head's scale (embeddings ~N(0,1),
  // projections ~N(0,1/fan_in), norms uniform in [0.8, 1.2]). 0: 3.0, peaked but not degenerate.
  float init_scale = 0.0f;
};

// The weights written, already rounded to the stored dtype, as float: for independent references.
struct TestModelWeights {
  LlamaConfig config;
  std::map<std::string, std::vector<float>> tensors;
};

// Writes config.json, generation_config.json, safetensors, tokenizer.json and tokenizer_config.json
// (copied from tokenizer_dir, default: the project's bundled data/llama-3.1-tokenizer) into dir.
TestModelWeights write_test_model(const std::filesystem::path& dir, const TestModelSpec& spec = {},
                                  const std::filesystem::path& tokenizer_dir = {});

// The project's bundled tokenizer folder (data/llama-3.1-tokenizer).
std::filesystem::path bundled_tokenizer_dir();

}  // namespace llama31
