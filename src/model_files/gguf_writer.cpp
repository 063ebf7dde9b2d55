#include "model_files/gguf_writer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <numbers>
#include <optional>

#include <nlohmann/json.hpp>

#include "model_files/gguf_reader.h"
#include "util/error.h"

namespace llama31 {
namespace {

constexpr GgufFileType kFileTypes[] = {GgufFileType::BF16, GgufFileType::F16,  GgufFileType::F32,
                                       GgufFileType::Q8_0, GgufFileType::Q4_0, GgufFileType::Q4_K_M};

template <typename T>
void append_scalar(std::vector<uint8_t>& out, T value) {
  uint8_t bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // GGUF is little-endian, as every supported host is
  out.insert(out.end(), bytes, bytes + sizeof(T));
}

void append_string(std::vector<uint8_t>& out, const std::string& s) {
  append_scalar<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

uint64_t align_up(uint64_t value, uint64_t alignment) { return (value + alignment - 1) / alignment * alignment; }

size_t element_count(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

// A stored tensor's rows converted to `type`: each row read as float, then quantized (or rounded) as
// llama.cpp does; rows in parallel (the K types search per block and are slow on a large model). Rows
// already of that type are not rounded again: the float types and the K-quants (kept as GGUF's blocks)
// are copied, Q8_0 and Q4_0 moved back from the kernels' row layout into GGUF's blocks.
std::vector<uint8_t> convert_tensor(const TensorView& view, GgmlType type) {
  const int64_t in = view.shape.back();
  const size_t rows = static_cast<size_t>(view.numel() / in);
  const size_t out_row = ggml_row_bytes(type, in);
  if ((view.dtype == DType::Q8_0 && type == GgmlType::Q8_0) || (view.dtype == DType::Q4_0 && type == GgmlType::Q4_0)) {
    const auto* src = reinterpret_cast<const uint8_t*>(view.data);
    const size_t src_row = row_bytes(view.dtype, in);
    std::vector<uint8_t> out(rows * out_row);
    for (size_t row = 0; row < rows; ++row) {
      if (type == GgmlType::Q8_0) q8_0_row_to_ggml(src + row * src_row, static_cast<size_t>(in), out.data() + row * out_row);
      else q4_0_row_to_ggml(src + row * src_row, static_cast<size_t>(in), out.data() + row * out_row);
    }
    return out;
  }
  const bool same = (view.dtype == DType::F32 && type == GgmlType::F32) ||
                    (view.dtype == DType::F16 && type == GgmlType::F16) ||
                    (view.dtype == DType::BF16 && type == GgmlType::BF16) ||
                    (is_kquant_dtype(view.dtype) && type == ggml_type_for(view.dtype));  // GGUF's own blocks
  if (same) {  // stored as written
    return {reinterpret_cast<const uint8_t*>(view.data), reinterpret_cast<const uint8_t*>(view.data) + view.nbytes};
  }
  // e4m3 bytes need their scales: export reads FP8 checkpoints widened (QuantizedForm::Dense).
  if (!is_matmul_dtype(view.dtype) || view.dtype == DType::F8_E4M3) {
    fail("GGUF export: tensor {} is stored as {}", view.name, dtype_name(view.dtype));
  }
  const size_t src_row = row_bytes(view.dtype, in);
  std::vector<uint8_t> out(rows * out_row);
  const auto* src = reinterpret_cast<const uint8_t*>(view.data);
#pragma omp parallel
  {
    std::vector<float> values(static_cast<size_t>(in));
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < static_cast<int64_t>(rows); ++r) {
      const auto row = static_cast<size_t>(r);
      convert_to_f32(view.dtype, src + row * src_row, values.data(), values.size());
      quantize_ggml_row(type, values.data(), in, out.data() + row * out_row);
    }
  }
  return out;
}

// Token strings, types and merges of a Hugging Face byte-level BPE tokenizer.json, as
// convert_hf_to_gguf.py's get_vocab_base lays them out: one entry per id below vocab_size.
struct GgufVocabulary {
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;  // 1 normal, 3 control (special added), 4 user defined, 5 unused
  std::vector<std::string> merges;
  std::map<std::string, int> ids;
};

// j: tokenizer.json's content (ModelFolder::tokenizer_document); source names it in errors.
GgufVocabulary read_vocabulary(const nlohmann::json& j, const std::string& source, int vocab_size) {
  if (!j.contains("model") || !j["model"].contains("vocab") || !j["model"]["vocab"].is_object()) {
    fail("{}: model.vocab missing or not an object", source);
  }
  if (j["model"].value("type", "BPE") != "BPE") fail("{}: model.type is not BPE", source);
  GgufVocabulary v;
  v.tokens.assign(static_cast<size_t>(vocab_size), "");
  v.token_types.assign(static_cast<size_t>(vocab_size), 0);
  auto place = [&](int id, const std::string& token, int32_t type) {
    if (id < 0 || id >= vocab_size) fail("{}: token {} has id {} outside the vocabulary of {}", source, token, id, vocab_size);
    v.tokens[static_cast<size_t>(id)] = token;
    v.token_types[static_cast<size_t>(id)] = type;
    v.ids[token] = id;
  };
  for (const auto& [token, id] : j["model"]["vocab"].items()) {
    if (!id.is_number_integer()) fail("{}: vocab entry {} has a non-integer id", source, token);
    place(id.get<int>(), token, 1);
  }
  if (j.contains("added_tokens")) {
    for (const auto& added : j["added_tokens"]) {
      place(added.at("id").get<int>(), added.at("content").get<std::string>(), added.value("special", false) ? 3 : 4);
    }
  }
  for (size_t id = 0; id < v.tokens.size(); ++id) {
    if (v.token_types[id] == 0) {
      v.tokens[id] = "[PAD" + std::to_string(id) + "]";
      v.token_types[id] = 5;
    }
  }
  for (const auto& merge : j["model"].value("merges", nlohmann::json::array())) {
    if (merge.is_string()) {
      v.merges.push_back(merge.get<std::string>());
    } else if (merge.is_array() && merge.size() == 2) {
      v.merges.push_back(merge[0].get<std::string>() + " " + merge[1].get<std::string>());
    } else {
      fail("{}: a merge is neither \"a b\" nor [a, b]", source);
    }
  }
  return v;
}

// A special token named in tokenizer_config.json ("bos_token": "<|begin_of_text|>" or {"content": ...}).
std::optional<int> named_token(const nlohmann::json& tokenizer_config, const char* key, const GgufVocabulary& v) {
  if (!tokenizer_config.contains(key)) return std::nullopt;
  const auto& entry = tokenizer_config[key];
  std::string name;
  if (entry.is_string()) name = entry.get<std::string>();
  else if (entry.is_object() && entry.contains("content")) name = entry["content"].get<std::string>();
  else return std::nullopt;
  auto it = v.ids.find(name);
  return it == v.ids.end() ? std::nullopt : std::optional<int>(it->second);
}

// ggml's fallback for a tensor whose rows are not whole blocks of `type` (llama-quant.cpp's
// tensor_type_fallback): a 32-block type of about the same size, and F16 when even that does not fit.
GgmlType fallback_type(GgmlType type, int64_t columns, const std::string& name) {
  if (columns % ggml_block_values(type) == 0) return type;
  GgmlType smaller = type;
  switch (type) {
    case GgmlType::Q4_K: smaller = GgmlType::Q5_0; break;
    case GgmlType::Q6_K: smaller = GgmlType::Q8_0; break;
    case GgmlType::Q5_K: fail("GGUF tensor {}: rows of {} need llama.cpp's Q5_1 fallback, which is not written", name, columns);
    default: break;  // a 32-block type already
  }
  return columns % ggml_block_values(smaller) == 0 ? smaller : GgmlType::F16;
}

// The Hugging Face tensors a GGUF file holds, in the order llama.cpp's converter writes them.
std::vector<std::string> exported_tensor_names(const LlamaConfig& c) {
  std::vector<std::string> hf_names = {"model.embed_tokens.weight"};
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    for (const char* suffix : {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                               "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                               "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}) {
      hf_names.push_back(layer_tensor_name(l, suffix));
    }
  }
  hf_names.push_back("model.norm.weight");
  if (!c.tie_word_embeddings) hf_names.push_back("lm_head.weight");
  return hf_names;
}

std::string upper(std::string_view text) {
  std::string out(text);
  for (char& ch : out) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return out;
}

// "blk.N." -> N; -1 for tensors outside the blocks.
int layer_of(const std::string& gguf_name) {
  if (gguf_name.rfind("blk.", 0) != 0) return -1;
  return std::stoi(gguf_name.substr(4));
}

}  // namespace

std::optional<GgufFileType> gguf_file_type_from_name(std::string_view name) {
  std::string lower(name);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (GgufFileType t : kFileTypes) {
    if (gguf_file_type_name(t) == lower) return t;
  }
  return std::nullopt;
}

std::string_view gguf_file_type_name(GgufFileType type) {
  switch (type) {
    case GgufFileType::F32: return "f32";
    case GgufFileType::F16: return "f16";
    case GgufFileType::BF16: return "bf16";
    case GgufFileType::Q8_0: return "q8_0";
    case GgufFileType::Q4_0: return "q4_0";
    case GgufFileType::Q4_K_M: return "q4_k_m";
  }
  return "unknown";
}

std::string gguf_file_type_names() {
  std::string names;
  for (GgufFileType t : kFileTypes) names += (names.empty() ? "" : ", ") + std::string(gguf_file_type_name(t));
  return names;
}

std::string gguf_tensor_name(const std::string& hf_name) {
  static const std::map<std::string, std::string> kGlobal = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
  };
  static const std::map<std::string, std::string> kLayer = {
      {"input_layernorm.weight", "attn_norm.weight"},      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},        {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},   {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},         {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  if (auto it = kGlobal.find(hf_name); it != kGlobal.end()) return it->second;
  const std::string prefix = "model.layers.";
  if (hf_name.rfind(prefix, 0) == 0) {
    const size_t dot = hf_name.find('.', prefix.size());
    if (dot != std::string::npos) {
      if (auto it = kLayer.find(hf_name.substr(dot + 1)); it != kLayer.end()) {
        return "blk." + hf_name.substr(prefix.size(), dot - prefix.size()) + "." + it->second;
      }
    }
  }
  fail("no GGUF name for tensor {}", hf_name);
}

GgufTypeContext gguf_type_context(const LlamaConfig& config) {
  GgufTypeContext context;
  context.layers = config.num_hidden_layers;
  context.tied_embeddings = config.tie_word_embeddings;
  context.llama_70b = config.num_hidden_layers == 80 && config.num_attention_heads != config.num_key_value_heads;
  return context;
}

GgmlType gguf_tensor_type(GgufFileType file_type, const std::string& gguf_name, const std::vector<int64_t>& shape,
                          const GgufTypeContext& context) {
  if (shape.size() <= 1) return GgmlType::F32;
  switch (file_type) {
    case GgufFileType::F32: return GgmlType::F32;
    case GgufFileType::F16: return GgmlType::F16;
    case GgufFileType::BF16: return GgmlType::BF16;
    case GgufFileType::Q8_0:
    case GgufFileType::Q4_0:
    case GgufFileType::Q4_K_M: break;
  }
  const GgmlType base = file_type == GgufFileType::Q8_0   ? GgmlType::Q8_0
                        : file_type == GgufFileType::Q4_0 ? GgmlType::Q4_0
                                                          : GgmlType::Q4_K;
  const int64_t columns = shape.back();
  const int layer = layer_of(gguf_name);
  // use_more_bits in llama-quant.cpp: the first and last eighth of the layers and every third between.
  auto more_bits = [n = context.layers](int i) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; };
  GgmlType type = base;
  if (gguf_name == "output.weight" || (context.tied_embeddings && gguf_name == "token_embd.weight")) {
    if (columns % ggml_block_values(base) != 0) type = GgmlType::Q8_0;
    else if (base != GgmlType::Q8_0) type = GgmlType::Q6_K;
  } else if (gguf_name.ends_with("attn_v.weight")) {
    if (file_type == GgufFileType::Q4_K_M && more_bits(layer)) type = GgmlType::Q6_K;
    if (context.llama_70b && type == GgmlType::Q4_K) type = GgmlType::Q5_K;
  } else if (gguf_name.ends_with("ffn_down.weight")) {
    if (file_type == GgufFileType::Q4_K_M && more_bits(layer)) type = GgmlType::Q6_K;
  }
  return fallback_type(type, columns, gguf_name);
}

GgmlType ggml_type_for(DType dtype) {
  if (dtype == DType::F32) return GgmlType::F32;
  if (dtype == DType::F16) return GgmlType::F16;
  if (dtype == DType::BF16) return GgmlType::BF16;
  if (dtype == DType::Q8_0) return GgmlType::Q8_0;
  if (dtype == DType::Q4_0) return GgmlType::Q4_0;
  if (dtype == DType::Q4_K) return GgmlType::Q4_K;
  if (dtype == DType::Q5_K) return GgmlType::Q5_K;
  if (dtype == DType::Q6_K) return GgmlType::Q6_K;
  fail("GGUF has no tensor type for {}", dtype_name(dtype));
}

size_t gguf_tensor_bytes(GgmlType type, const std::vector<int64_t>& shape) {
  if (shape.empty()) return 0;
  const std::vector<int64_t> outer(shape.begin(), shape.end() - 1);
  return ggml_row_bytes(type, shape.back()) * element_count(outer);
}

size_t gguf_tensor_bytes(DType dtype, const std::vector<int64_t>& shape) {
  return gguf_tensor_bytes(ggml_type_for(dtype), shape);
}

void GgufWriter::begin_key(const std::string& key, GgufValueType type) {
  append_string(kv_bytes_, key);
  append_scalar<uint32_t>(kv_bytes_, static_cast<uint32_t>(type));
  ++kv_count_;
}

void GgufWriter::add_string(const std::string& key, const std::string& value) {
  begin_key(key, GgufValueType::STRING);
  append_string(kv_bytes_, value);
}
void GgufWriter::add_uint32(const std::string& key, uint32_t value) {
  begin_key(key, GgufValueType::UINT32);
  append_scalar(kv_bytes_, value);
}
void GgufWriter::add_int32(const std::string& key, int32_t value) {
  begin_key(key, GgufValueType::INT32);
  append_scalar(kv_bytes_, value);
}
void GgufWriter::add_float32(const std::string& key, float value) {
  begin_key(key, GgufValueType::FLOAT32);
  append_scalar(kv_bytes_, value);
}
void GgufWriter::add_bool(const std::string& key, bool value) {
  begin_key(key, GgufValueType::BOOL);
  append_scalar<uint8_t>(kv_bytes_, value ? 1 : 0);
}
void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& values) {
  begin_key(key, GgufValueType::ARRAY);
  append_scalar<uint32_t>(kv_bytes_, static_cast<uint32_t>(GgufValueType::STRING));
  append_scalar<uint64_t>(kv_bytes_, values.size());
  for (const auto& v : values) append_string(kv_bytes_, v);
}
void GgufWriter::add_int32_array(const std::string& key, const std::vector<int32_t>& values) {
  begin_key(key, GgufValueType::ARRAY);
  append_scalar<uint32_t>(kv_bytes_, static_cast<uint32_t>(GgufValueType::INT32));
  append_scalar<uint64_t>(kv_bytes_, values.size());
  for (int32_t v : values) append_scalar(kv_bytes_, v);
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape,
                            std::vector<uint8_t> data) {
  if (shape.empty()) fail("GGUF tensor {}: no dimensions", name);
  if (data.size() != gguf_tensor_bytes(type, shape)) {
    fail("GGUF tensor {}: {} bytes for {} elements of {}", name, data.size(), element_count(shape), ggml_type_name(type));
  }
  add_tensor(name, type, shape, [bytes = std::move(data)] { return bytes; });
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape,
                            TensorProducer produce) {
  if (shape.empty()) fail("GGUF tensor {}: no dimensions", name);
  for (int64_t d : shape) {
    if (d <= 0) fail("GGUF tensor {}: dimension {} is not positive", name, d);
  }
  if (shape.back() % ggml_block_values(type) != 0) {
    fail("GGUF tensor {}: rows of {} are not whole {} blocks of {}", name, shape.back(), ggml_type_name(type),
         ggml_block_values(type));
  }
  tensors_.push_back({name, type, shape, std::move(produce)});
}

void GgufWriter::write(const std::filesystem::path& path) const {
  std::vector<uint8_t> header;
  header.insert(header.end(), {'G', 'G', 'U', 'F'});
  append_scalar<uint32_t>(header, kVersion);
  append_scalar<uint64_t>(header, tensors_.size());
  append_scalar<uint64_t>(header, kv_count_);
  header.insert(header.end(), kv_bytes_.begin(), kv_bytes_.end());
  uint64_t offset = 0;
  std::vector<uint64_t> sizes;
  for (const Tensor& t : tensors_) {
    append_string(header, t.name);
    append_scalar<uint32_t>(header, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) append_scalar<uint64_t>(header, static_cast<uint64_t>(*it));
    append_scalar<uint32_t>(header, static_cast<uint32_t>(t.type));
    append_scalar<uint64_t>(header, offset);
    sizes.push_back(gguf_tensor_bytes(t.type, t.shape));
    offset = align_up(offset + sizes.back(), kAlignment);
  }
  header.resize(align_up(header.size(), kAlignment), 0);

  // Written under a temporary name and renamed at the end: a failed export leaves no truncated file.
  std::filesystem::path partial = path;
  partial += ".partial";
  std::ofstream out(partial, std::ios::binary | std::ios::trunc);
  if (!out) fail("cannot create {}", path.string());
  auto remove_partial = [&partial] {
    std::error_code ignored;
    std::filesystem::remove(partial, ignored);
  };
  try {
    out.write(reinterpret_cast<const char*>(header.data()), static_cast<std::streamsize>(header.size()));
    static const char kZeros[kAlignment] = {};
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const std::vector<uint8_t> data = tensors_[i].produce();
      if (data.size() != sizes[i]) {
        fail("GGUF tensor {}: produced {} bytes, expected {}", tensors_[i].name, data.size(), sizes[i]);
      }
      out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
      const uint64_t padding = align_up(data.size(), kAlignment) - data.size();
      out.write(kZeros, static_cast<std::streamsize>(padding));
    }
    out.close();
    if (!out) fail("error while writing {}", path.string());
  } catch (...) {
    out.close();
    remove_partial();
    throw;
  }
  std::error_code error;
  std::filesystem::rename(partial, path, error);
  if (error) fail("cannot rename {} to {}: {}", partial.string(), path.string(), error.message());
}

std::vector<uint8_t> permute_rotary_rows(const std::vector<uint8_t>& data, int64_t heads, int64_t head_dim,
                                         size_t row_bytes) {
  if (head_dim % 2 != 0 || data.size() != static_cast<size_t>(heads * head_dim) * row_bytes) {
    fail("cannot permute rotary rows: {} bytes for {} heads of {} rows of {} bytes", data.size(), heads, head_dim,
         row_bytes);
  }
  const int64_t half = head_dim / 2;
  std::vector<uint8_t> out(data.size());
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t part = 0; part < 2; ++part) {
      for (int64_t j = 0; j < half; ++j) {
        const auto from = static_cast<size_t>(h * head_dim + part * half + j);
        const auto to = static_cast<size_t>(h * head_dim + j * 2 + part);
        std::memcpy(out.data() + to * row_bytes, data.data() + from * row_bytes, row_bytes);
      }
    }
  }
  return out;
}

std::vector<float> llama3_rope_factors(const LlamaConfig& config) {
  if (!config.rope_scaling || config.rope_scaling->rope_type != "llama3") return {};
  const RopeScaling& s = *config.rope_scaling;
  const int dim = config.head_dim > 0 ? config.head_dim : config.hidden_size / config.num_attention_heads;
  const double low_freq_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const double high_freq_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
  std::vector<float> factors;
  for (int i = 0; i < dim; i += 2) {
    // As the converter does: the base frequency in float32, the factor in double.
    const float exponent = static_cast<float>(i) / static_cast<float>(dim);
    const float freq = 1.0f / std::pow(static_cast<float>(config.rope_theta), exponent);
    const double wavelen = 2.0 * std::numbers::pi / static_cast<double>(freq);
    double factor;
    if (wavelen < high_freq_wavelen) {
      factor = 1.0;
    } else if (wavelen > low_freq_wavelen) {
      factor = s.factor;
    } else {
      const double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
      factor = 1.0 / ((1.0 - smooth) / s.factor + smooth);
    }
    factors.push_back(static_cast<float>(factor));
  }
  return factors;
}

void export_gguf(const ModelFolder& model, const std::filesystem::path& out, const GgufExportOptions& options) {
  const LlamaConfig& c = model.config;
  const int head_dim = c.head_dim > 0 ? c.head_dim : c.hidden_size / c.num_attention_heads;
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("general.type", "model");
  // The folder's name, or a GGUF source's own general.name (its file name without .gguf when it has none).
  std::string name = std::filesystem::absolute(model.dir).lexically_normal().filename().string();
  if (model.is_gguf()) {
    name = model.gguf->find_string("general.name").value_or(std::filesystem::path(name).stem().string());
  }
  w.add_string("general.name", name.empty() ? "llama" : name);
  w.add_uint32("llama.block_count", static_cast<uint32_t>(c.num_hidden_layers));
  w.add_uint32("llama.context_length", static_cast<uint32_t>(c.max_position_embeddings));
  w.add_uint32("llama.embedding_length", static_cast<uint32_t>(c.hidden_size));
  w.add_uint32("llama.feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
  w.add_uint32("llama.attention.head_count", static_cast<uint32_t>(c.num_attention_heads));
  w.add_uint32("llama.attention.head_count_kv", static_cast<uint32_t>(c.num_key_value_heads));
  w.add_float32("llama.rope.freq_base", static_cast<float>(c.rope_theta));
  w.add_float32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  w.add_uint32("llama.attention.key_length", static_cast<uint32_t>(head_dim));
  w.add_uint32("llama.attention.value_length", static_cast<uint32_t>(head_dim));
  w.add_uint32("general.file_type", static_cast<uint32_t>(options.type));
  w.add_uint32("llama.vocab_size", static_cast<uint32_t>(c.vocab_size));
  w.add_uint32("llama.rope.dimension_count", static_cast<uint32_t>(head_dim));
  w.add_uint32("general.quantization_version", 2);

  // Tokenizer: byte-level BPE with Llama 3's pre-tokenizer, as convert_hf_to_gguf.py's _set_vocab_gpt2. The
  // documents are tokenizer.json / tokenizer_config.json of a folder, or a GGUF source's tokenizer.ggml.*
  // translated to them (which read back into the same arrays).
  const std::string tokenizer_source = model.is_gguf() ? model.dir.string() : model.tokenizer_json.string();
  const GgufVocabulary vocab = read_vocabulary(model.tokenizer_document(), tokenizer_source, c.vocab_size);
  const nlohmann::json tokenizer_config = model.tokenizer_config_document();
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "llama-bpe");
  w.add_string_array("tokenizer.ggml.tokens", vocab.tokens);
  w.add_int32_array("tokenizer.ggml.token_type", vocab.token_types);
  w.add_string_array("tokenizer.ggml.merges", vocab.merges);
  // A GGUF source names exactly the ids it has (its config's end tokens also count eot/eom and token texts).
  std::optional<int> bos = named_token(tokenizer_config, "bos_token", vocab);
  if (!bos && !model.is_gguf()) bos = c.bos_token_id ? c.bos_token_id : model.generation.bos_token_id;
  std::optional<int> eos = named_token(tokenizer_config, "eos_token", vocab);
  if (!eos && !model.is_gguf() && !c.eos_token_ids.empty()) eos = c.eos_token_ids.front();
  if (bos) w.add_uint32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(*bos));
  if (eos) w.add_uint32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(*eos));
  // Llama 3's post-processor prepends BOS; a GGUF source keeps its own flag.
  std::optional<bool> add_bos;
  if (model.is_gguf()) add_bos = model.gguf->find_bool("tokenizer.ggml.add_bos_token");
  w.add_bool("tokenizer.ggml.add_bos_token", add_bos.value_or(bos.has_value()));
  if (model.is_gguf()) {  // the other special-token keys llama.cpp's converter may have written
    for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id",
                            "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id"}) {
      if (auto id = model.gguf->find_uint(key); id && *id < vocab.tokens.size()) {
        w.add_uint32(key, static_cast<uint32_t>(*id));
      }
    }
    if (auto add_eos = model.gguf->find_bool("tokenizer.ggml.add_eos_token")) {
      w.add_bool("tokenizer.ggml.add_eos_token", *add_eos);
    }
  }
  if (tokenizer_config.contains("chat_template")) {
    const auto& t = tokenizer_config["chat_template"];
    if (t.is_string()) {
      w.add_string("tokenizer.chat_template", t.get<std::string>());
    } else if (t.is_array()) {  // named templates: the default one
      for (const auto& named : t) {
        if (named.value("name", "") == "default") w.add_string("tokenizer.chat_template", named.value("template", ""));
      }
    }
  }

  // Tensors, in the order llama.cpp's converter writes them: extra rope_freqs first, then the weights.
  const std::vector<std::string> hf_names = exported_tensor_names(c);

  // rope_freqs from rope_scaling, or as a GGUF source stored them (its config has the factors, no scaling).
  std::vector<float> rope_factors = llama3_rope_factors(c);
  if (rope_factors.empty()) rope_factors.assign(c.rope_frequency_factors.begin(), c.rope_frequency_factors.end());
  const size_t total = hf_names.size() + (rope_factors.empty() ? 0 : 1);
  size_t index = 0;
  auto progress = [&options, total](const std::string& gguf_name, size_t i) {
    if (options.on_tensor) options.on_tensor(gguf_name, i, total);
  };
  if (!rope_factors.empty()) {
    std::vector<uint8_t> bytes(rope_factors.size() * sizeof(float));
    std::memcpy(bytes.data(), rope_factors.data(), bytes.size());
    const size_t i = index++;
    w.add_tensor("rope_freqs.weight", GgmlType::F32, {static_cast<int64_t>(rope_factors.size())},
                 [bytes, i, progress] {
                   progress("rope_freqs.weight", i);
                   return bytes;
                 });
  }
  const GgufTypeContext type_context = gguf_type_context(c);
  for (const std::string& hf_name : hf_names) {
    const TensorView& view = model.weights.get(hf_name);
    const std::string gguf_name = gguf_tensor_name(hf_name);
    const GgmlType type = gguf_tensor_type(options.type, gguf_name, view.shape, type_context);
    int64_t permute_heads = 0;
    if (hf_name.ends_with("self_attn.q_proj.weight")) permute_heads = c.num_attention_heads;
    if (hf_name.ends_with("self_attn.k_proj.weight")) permute_heads = c.num_key_value_heads;
    const size_t i = index++;
    // A GGUF source's tensor of the type asked for is written as the file holds it (bit for bit, rows
    // already in llama.cpp's rotary order); Q5_0, which runs re-stored as Q8_0, stays Q5_0 this way.
    const GgufTensorInfo* stored = model.is_gguf() ? model.gguf->find_tensor(gguf_name) : nullptr;
    if (stored != nullptr && stored->type == type && stored->shape == view.shape) {
      w.add_tensor(gguf_name, type, view.shape, [stored, gguf_name, i, progress] {
        progress(gguf_name, i);
        const auto* data = reinterpret_cast<const uint8_t*>(stored->data);
        return std::vector<uint8_t>(data, data + stored->nbytes);
      });
      continue;
    }
    w.add_tensor(gguf_name, type, view.shape, [&view, gguf_name, type, permute_heads, head_dim, i, progress] {
      progress(gguf_name, i);
      std::vector<uint8_t> bytes = convert_tensor(view, type);
      // Whole rows move, so permuting after quantizing equals quantizing the permuted rows.
      if (permute_heads > 0) {
        bytes = permute_rotary_rows(bytes, permute_heads, head_dim, ggml_row_bytes(type, view.shape.at(1)));
      }
      return bytes;
    });
  }
  w.write(out);
}

std::vector<std::string> gguf_requantized_sources(const ModelFolder& model, GgufFileType type) {
  if (type == GgufFileType::F32 || type == GgufFileType::F16 || type == GgufFileType::BF16) return {};
  // A quantized checkpoint is read dense, but its numbers are its quantization's.
  if (model.config.quantization) return {upper(quant_method_name(model.config.quantization->method))};
  std::vector<std::string> sources;
  const GgufTypeContext context = gguf_type_context(model.config);
  for (const std::string& hf_name : exported_tensor_names(model.config)) {
    const TensorView& view = model.weights.get(hf_name);
    if (view.shape.size() < 2 || is_compute_dtype(view.dtype)) continue;
    const std::string gguf_name = gguf_tensor_name(hf_name);
    // As the file stores it: a GGUF's Q5_0 runs re-stored as Q8_0 but is written back as Q5_0.
    const GgufTensorInfo* stored = model.is_gguf() ? model.gguf->find_tensor(gguf_name) : nullptr;
    const GgmlType from = stored != nullptr ? stored->type : ggml_type_for(view.dtype);
    const GgmlType to = gguf_tensor_type(type, gguf_name, view.shape, context);
    if (!ggml_is_quantized(from) || !ggml_is_quantized(to) || from == to) continue;
    const std::string name = upper(ggml_type_name(from));
    if (std::find(sources.begin(), sources.end(), name) == sources.end()) sources.push_back(name);
  }
  return sources;
}

std::optional<RopeScaling> llama3_rope_scaling_for_factors(const LlamaConfig& config, const std::string& source) {
  if (config.rope_scaling || config.rope_frequency_factors.empty()) return config.rope_scaling;
  const std::vector<double>& factors = config.rope_frequency_factors;
  const double largest = *std::max_element(factors.begin(), factors.end());
  if (std::all_of(factors.begin(), factors.end(), [](double f) { return f == 1.0; })) return std::nullopt;
  // Llama 3.1 (factor 8) and 3.2 (factor 32) share the band: low_freq_factor 1, high_freq_factor 4,
  // original_max_position_embeddings 8192. The stored factors are f32 of the same formula.
  LlamaConfig candidate = config;
  candidate.rope_frequency_factors.clear();
  candidate.rope_scaling = RopeScaling{"llama3", largest, 1.0, 4.0, 8192};
  const std::vector<float> expected = llama3_rope_factors(candidate);
  bool match = expected.size() == factors.size();
  for (size_t i = 0; match && i < factors.size(); ++i) {
    match = std::fabs(static_cast<double>(expected[i]) - factors[i]) <= 1e-6 * std::max(1.0, factors[i]);
  }
  if (!match) {
    fail("{}: rope_freqs.weight is not llama3 rope scaling with low_freq_factor 1, high_freq_factor 4 and "
         "original_max_position_embeddings 8192 (as Llama 3.1 and 3.2); config.json cannot state it",
         source);
  }
  return candidate.rope_scaling;
}

}  // namespace llama31
