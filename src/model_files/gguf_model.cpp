#include "model_files/gguf_model.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "util/error.h"
#include "util/progress.h"

namespace llama31 {
namespace {

// The tokenizer.json pre-tokenizer Llama 3 uses; GGUF names it "llama-bpe" (tokenizer.ggml.pre).
constexpr const char* kLlama3SplitRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// llama.cpp's token types (tokenizer.ggml.token_type).
enum TokenType : int { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// End-of-generation tokens llama.cpp recognises by their text besides the eos/eot/eom ids.
constexpr const char* kEndTokenTexts[] = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"};

std::string arch_key(const char* suffix) { return std::string("llama.") + suffix; }

const nlohmann::json& tokens_of(const GgufFile& f) {
  const nlohmann::json& tokens = f.get_array("tokenizer.ggml.tokens");
  for (const auto& t : tokens) {
    if (!t.is_string()) fail("{}: tokenizer.ggml.tokens holds a non-string entry", f.path().string());
  }
  return tokens;
}

std::vector<int> token_types_of(const GgufFile& f, size_t count) {
  std::vector<int> types(count, kNormal);
  if (f.find("tokenizer.ggml.token_type") == nullptr) return types;
  const nlohmann::json& array = f.get_array("tokenizer.ggml.token_type");
  if (array.size() != count) {
    fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", f.path().string(), array.size(), count);
  }
  for (size_t i = 0; i < count; ++i) {
    if (!array[i].is_number_integer()) fail("{}: tokenizer.ggml.token_type[{}] is not an integer", f.path().string(), i);
    types[i] = array[i].get<int>();
  }
  return types;
}

// A token id from the metadata, checked against the vocabulary.
std::optional<int> token_id(const GgufFile& f, const char* key, size_t vocab) {
  const std::optional<uint64_t> id = f.find_uint(key);
  if (!id) return std::nullopt;
  if (*id >= vocab) fail("{}: {} = {} is outside the vocabulary of {} tokens", f.path().string(), key, *id, vocab);
  return static_cast<int>(*id);
}

// Rows of `row_bytes` moved back from llama.cpp's rotary order (head, j, half) to Hugging Face's
// (head, half, j): the inverse of permute_rotary_rows.
void unpermute_rotary_rows(const std::byte* src, std::byte* dst, int64_t rows, int64_t head_dim, size_t row_bytes) {
  const int64_t half = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t head = r / head_dim;
    const int64_t within = r % head_dim;  // HF: which half, then j
    const int64_t gguf_row = head * head_dim + (within % half) * 2 + within / half;
    std::memcpy(dst + static_cast<size_t>(r) * row_bytes, src + static_cast<size_t>(gguf_row) * row_bytes, row_bytes);
  }
}

// The in-memory type a GGUF tensor type with rows of n values runs as. Q4_K, Q5_K and Q6_K keep their
// super-blocks (the K-quant kernels run them as stored). A row that is not whole super-blocks of 256 (GGUF's
// own blocks rule it out; this is a guard) falls back, as Q5_0 always does, to its exact values re-stored
// as Q8_0.
DType runtime_dtype(GgmlType type, int64_t n) {
  switch (type) {
    case GgmlType::F32: return DType::F32;
    case GgmlType::F16: return DType::F16;
    case GgmlType::BF16: return DType::BF16;
    case GgmlType::Q8_0: return DType::Q8_0;
    case GgmlType::Q4_0: return DType::Q4_0;
    case GgmlType::Q4_K: return n % 256 == 0 ? DType::Q4_K : DType::Q8_0;
    case GgmlType::Q5_K: return n % 256 == 0 ? DType::Q5_K : DType::Q8_0;
    case GgmlType::Q6_K: return n % 256 == 0 ? DType::Q6_K : DType::Q8_0;
    case GgmlType::Q5_0: return DType::Q8_0;
  }
  return DType::F32;
}

void convert_row(GgmlType type, const std::byte* src, int64_t n, std::byte* dst, std::vector<float>& scratch) {
  switch (type) {
    case GgmlType::Q8_0: q8_0_row_from_ggml(src, static_cast<size_t>(n), dst); return;
    case GgmlType::Q4_0: q4_0_row_from_ggml(src, static_cast<size_t>(n), dst); return;
    default:  // Q5_0 (and K rows runtime_dtype does not keep): exact values re-stored as Q8_0 (whole blocks of 32)
      scratch.resize(static_cast<size_t>(n));
      dequantize_ggml_row(type, src, scratch.data(), n);
      quantize_row_q8_0(scratch.data(), static_cast<size_t>(n), dst);
  }
}

}  // namespace

std::string hf_tensor_name_for_gguf(const std::string& gguf_name) {
  // The writer's naming (gguf_tensor_name), read backwards.
  for (const char* global : {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}) {
    if (gguf_tensor_name(global) == gguf_name) return global;
  }
  const std::string prefix = "blk.";
  if (gguf_name.rfind(prefix, 0) != 0) return {};
  const size_t dot = gguf_name.find('.', prefix.size());
  const std::string layer = gguf_name.substr(prefix.size(), dot == std::string::npos ? 0 : dot - prefix.size());
  if (layer.empty() || layer.size() > 6 || !std::all_of(layer.begin(), layer.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return {};
  }
  std::vector<std::string> suffixes = {"input_layernorm", "post_attention_layernorm"};
  suffixes.insert(suffixes.end(), kLayerLinearModules.begin(), kLayerLinearModules.end());
  for (const std::string& suffix : suffixes) {
    const std::string hf_name = layer_tensor_name(std::stoi(layer), (suffix + ".weight").c_str());
    if (gguf_tensor_name(hf_name) == gguf_name) return hf_name;
  }
  return {};
}

nlohmann::json gguf_config_document(const GgufFile& f) {
  const std::string source = f.path().string();
  const std::string arch = f.get_string("general.architecture");
  if (arch != "llama") {
    fail("{}: general.architecture is '{}'; llama31 runs Llama models ('llama')", source, arch);
  }
  if (auto type = f.find_string(arch_key("rope.scaling.type")); type && *type != "none" && *type != "llama3") {
    fail("{}: llama.rope.scaling.type '{}' is not supported (Llama 3.1 stores its scaling as rope_freqs)", source, *type);
  }
  nlohmann::json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["hidden_size"] = f.get_uint(arch_key("embedding_length"));
  j["intermediate_size"] = f.get_uint(arch_key("feed_forward_length"));
  j["num_hidden_layers"] = f.get_uint(arch_key("block_count"));
  const uint64_t heads = f.get_uint(arch_key("attention.head_count"));
  j["num_attention_heads"] = heads;
  j["num_key_value_heads"] = f.find_uint(arch_key("attention.head_count_kv")).value_or(heads);
  if (auto key_length = f.find_uint(arch_key("attention.key_length"))) {
    j["head_dim"] = *key_length;
    if (auto value_length = f.find_uint(arch_key("attention.value_length")); value_length && *value_length != *key_length) {
      fail("{}: attention.value_length {} differs from key_length {} (not a Llama layout)", source, *value_length, *key_length);
    }
  }
  const size_t tokens = tokens_of(f).size();
  j["vocab_size"] = f.find_uint(arch_key("vocab_size")).value_or(tokens);
  j["max_position_embeddings"] = f.get_uint(arch_key("context_length"));
  j["rms_norm_eps"] = f.get_float(arch_key("attention.layer_norm_rms_epsilon"));
  j["rope_theta"] = f.find_float(arch_key("rope.freq_base")).value_or(10000.0);  // llama.cpp's default
  j["tie_word_embeddings"] = f.find_tensor("output.weight") == nullptr;
  j["torch_dtype"] = "gguf";
  if (auto bos = token_id(f, "tokenizer.ggml.bos_token_id", tokens)) j["bos_token_id"] = *bos;
  // Every end-of-generation token, as llama.cpp collects them: the ids named, and the Llama 3 end tokens.
  std::vector<int> eos;
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    if (auto id = token_id(f, key, tokens)) eos.push_back(*id);
  }
  const nlohmann::json& texts = tokens_of(f);
  for (size_t id = 0; id < texts.size(); ++id) {
    const auto& text = texts[id].get_ref<const std::string&>();
    for (const char* end : kEndTokenTexts) {
      if (text == end) eos.push_back(static_cast<int>(id));
    }
  }
  std::sort(eos.begin(), eos.end());
  eos.erase(std::unique(eos.begin(), eos.end()), eos.end());
  if (!eos.empty()) j["eos_token_id"] = eos;
  return j;
}

GgufTokenizerParts gguf_tokenizer_parts(const GgufFile& f) {
  const std::string source = f.path().string();
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "gpt2") {
    fail("{}: tokenizer.ggml.model '{}' is not supported (Llama 3 uses byte-level BPE, 'gpt2')", source, model);
  }
  const std::string pre = f.find_string("tokenizer.ggml.pre").value_or("default");
  if (pre != "llama-bpe" && pre != "llama3") {
    fail("{}: tokenizer.ggml.pre '{}' is not supported (Llama 3 files have 'llama-bpe')", source, pre);
  }
  const nlohmann::json& tokens = tokens_of(f);
  const std::vector<int> types = token_types_of(f, tokens.size());
  GgufTokenizerParts parts;
  parts.vocab.reserve(tokens.size());
  nlohmann::json added = nlohmann::json::array();
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string& text = tokens[id].get_ref<const std::string&>();
    switch (types[id]) {
      case kNormal: parts.vocab.emplace_back(text, static_cast<int>(id)); break;
      case kControl:
      case kUserDefined:
        added.push_back({{"id", id}, {"content", text}, {"special", types[id] == kControl}});
        break;
      case kUnused: break;  // padding ids convert_hf_to_gguf.py adds; never produced
      default:
        fail("{}: token {} ('{}') has type {}, which byte-level BPE files do not use", source, id, text, types[id]);
    }
  }
  if (f.find("tokenizer.ggml.merges") != nullptr) {
    const nlohmann::json& merges = f.get_array("tokenizer.ggml.merges");
    parts.merges.reserve(merges.size());
    for (const nlohmann::json& merge : merges) {
      if (!merge.is_string()) fail("{}: tokenizer.ggml.merges holds a non-string entry", source);
      parts.merges.push_back(merge.get<std::string>());
    }
  }
  nlohmann::json& doc = parts.rest;
  doc["model"] = {{"type", "BPE"}, {"ignore_merges", true}};
  doc["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", kLlama3SplitRegex}}}, {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  doc["added_tokens"] = std::move(added);
  return parts;
}

nlohmann::json gguf_tokenizer_document(const GgufFile& f) {
  GgufTokenizerParts parts = gguf_tokenizer_parts(f);
  nlohmann::json vocab = nlohmann::json::object();
  for (const auto& [text, id] : parts.vocab) vocab[text] = id;
  parts.rest["model"]["vocab"] = std::move(vocab);
  parts.rest["model"]["merges"] = parts.merges;
  return std::move(parts.rest);
}

nlohmann::json gguf_tokenizer_config_document(const GgufFile& f) {
  nlohmann::json config = nlohmann::json::object();
  const nlohmann::json& tokens = tokens_of(f);
  if (auto bos = token_id(f, "tokenizer.ggml.bos_token_id", tokens.size())) config["bos_token"] = tokens[*bos];
  if (auto eos = token_id(f, "tokenizer.ggml.eos_token_id", tokens.size())) config["eos_token"] = tokens[*eos];
  if (auto tmpl = f.find_string("tokenizer.chat_template")) config["chat_template"] = *tmpl;
  return config;
}

ModelFolder open_gguf_model(const std::filesystem::path& path) {
  auto file = std::make_shared<const GgufFile>(path);
  const std::string source = path.string();
  ModelFolder model;
  model.dir = path;
  model.gguf = file;
  model.config = LlamaConfig::from_json(gguf_config_document(*file), source);
  const LlamaConfig& c = model.config;
  if (const GgufTensorInfo* rope = file->find_tensor("rope_freqs.weight")) {
    if (rope->type != GgmlType::F32 || rope->shape.size() != 1 || rope->shape[0] != c.head_dim / 2) {
      fail("{}: rope_freqs.weight must be F32 [{}], got {} {}", source, c.head_dim / 2, ggml_type_name(rope->type),
           rope->shape.size() == 1 ? std::to_string(rope->shape[0]) : "of several dimensions");
    }
    std::vector<float> factors(static_cast<size_t>(rope->shape[0]));
    std::memcpy(factors.data(), rope->data, factors.size() * sizeof(float));
    for (float factor : factors) {
      if (!(factor > 0.0f) || !std::isfinite(factor)) fail("{}: rope_freqs.weight holds {} (factors must be positive)", source, factor);
    }
    model.config.rope_frequency_factors.assign(factors.begin(), factors.end());
  }
  if (auto dims = file->find_uint(arch_key("rope.dimension_count")); dims && *dims != static_cast<uint64_t>(c.head_dim)) {
    fail("{}: llama.rope.dimension_count {} differs from head_dim {} (partial rotary is not Llama)", source, *dims, c.head_dim);
  }

  model.weights = TensorStore::empty(path);
  size_t convert_bytes = 0;
  for (const GgufTensorInfo& t : file->tensors()) {
    if (t.name == "rope_freqs.weight") continue;
    if (hf_tensor_name_for_gguf(t.name).empty()) {
      fail("{}: tensor {} is not part of the Llama architecture (is this a Llama model?)", source, t.name);
    }
    convert_bytes += t.nbytes;
  }
  Progress progress("reading GGUF tensors", convert_bytes);
  size_t done = 0;
  for (const GgufTensorInfo& t : file->tensors()) {
    if (t.name == "rope_freqs.weight") continue;
    const std::string hf_name = hf_tensor_name_for_gguf(t.name);
    int64_t permute_heads = 0;
    if (hf_name.ends_with("self_attn.q_proj.weight")) permute_heads = c.num_attention_heads;
    if (hf_name.ends_with("self_attn.k_proj.weight")) permute_heads = c.num_key_value_heads;
    const int64_t n = t.shape.back();
    const DType dtype = runtime_dtype(t.type, n);
    const int64_t rows = static_cast<int64_t>(t.nbytes / ggml_row_bytes(t.type, n));
    if (permute_heads > 0 && rows != permute_heads * c.head_dim) {
      fail("{}: tensor {} has {} rows, expected {} heads of {}", source, t.name, rows, permute_heads, c.head_dim);
    }
    // The file's rows are the runtime rows: the float types, and the K-quants kept as super-blocks.
    const bool in_place = t.type == GgmlType::F32 || t.type == GgmlType::F16 || t.type == GgmlType::BF16 ||
                          (is_kquant_dtype(dtype) && ggml_row_bytes(t.type, n) == row_bytes(dtype, n));
    if (in_place && permute_heads == 0) {
      TensorView view;
      view.name = hf_name;
      view.dtype = dtype;
      view.shape = t.shape;
      view.data = t.data;
      view.nbytes = t.nbytes;
      view.file = path;
      model.weights.add_mapped(std::move(view), file->mapping());
    } else {
      const std::byte* src = t.data;
      std::vector<std::byte> unpermuted;
      const size_t src_row = ggml_row_bytes(t.type, n);
      if (permute_heads > 0) {
        unpermuted.resize(t.nbytes);
        unpermute_rotary_rows(t.data, unpermuted.data(), rows, c.head_dim, src_row);
        src = unpermuted.data();
      }
      const size_t dst_row = row_bytes(dtype, n);
      std::vector<std::byte> out(dst_row * static_cast<size_t>(rows));
      if (in_place) {
        std::memcpy(out.data(), src, out.size());
      } else {
#pragma omp parallel
        {
          std::vector<float> row_scratch;
#pragma omp for schedule(static)
          for (int64_t r = 0; r < rows; ++r) {
            convert_row(t.type, src + static_cast<size_t>(r) * src_row, n, out.data() + static_cast<size_t>(r) * dst_row,
                        row_scratch);
          }
        }
      }
      model.weights.add_owned(hf_name, dtype, t.shape, std::move(out));
      // The file's copy is not needed again: let the kernel drop its pages.
      file->mapping()->release_range(static_cast<size_t>(t.data - file->mapping()->data()), t.nbytes);
    }
    done += t.nbytes;
    progress.update(done);
  }
  progress.finish();
  model.check_tensors();
  return model;
}

}  // namespace llama31
