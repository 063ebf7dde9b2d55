// A llama.cpp GGUF file (general.architecture "llama") opened as the same ModelFolder a Hugging Face folder
// gives: config from the llama.* metadata, tensors under their Hugging Face names with the Q/K row
// permutation of convert_hf_to_gguf.py undone, and the tokenizer and chat template from tokenizer.*.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "model_files/gguf_reader.h"
#include "model_files/model_folder.h"

namespace llama31 {

// Tensors: F32, F16, BF16, Q4_K, Q5_K and Q6_K stay in the file's mapping (Q/K rows copied into place; the
// K-quants run on their own kernels as stored); Q8_0 and Q4_0 become the kernels' Q8_0 / Q4_0 rows (same
// numbers); Q5_0 has no kernel of its own: its exact values are re-stored as Q8_0 (int8 kernels, 8.5 bits a
// weight; the added rounding, at most half a step of 1/127 of each block of 32's largest value, is far
// below its own 5-bit steps).
// Progress on stderr.
ModelFolder open_gguf_model(const std::filesystem::path& path);

// The config.json a GGUF file's llama.* metadata stands for (validated as LlamaConfig::from_json does).
nlohmann::json gguf_config_document(const GgufFile& file);

// tokenizer.json's content for the file's tokenizer.ggml.* (byte-level BPE, Llama 3's pre-tokenizer).
nlohmann::json gguf_tokenizer_document(const GgufFile& file);
// The same content split as the tokenizer's loader takes it (Tokenizer::from_tables): the document less
// model.vocab and model.merges, with the vocabulary (text and id of each normal token, in id order) and the
// merges ("a b", in rank order) as tables; 128k vocabulary entries as one JSON object took a fifth of
// the load. gguf_tokenizer_document assembles these three.
struct GgufTokenizerParts {
  nlohmann::json rest;
  std::vector<std::pair<std::string, int>> vocab;
  std::vector<std::string> merges;
};
GgufTokenizerParts gguf_tokenizer_parts(const GgufFile& file);
// bos_token, eos_token and chat_template as tokenizer_config.json would hold them.
nlohmann::json gguf_tokenizer_config_document(const GgufFile& file);

// The Hugging Face name of a GGUF tensor ("blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight");
// empty for names the Llama architecture does not have.
std::string hf_tensor_name_for_gguf(const std::string& gguf_name);

}  // namespace llama31
