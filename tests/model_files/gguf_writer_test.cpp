// The GGUF export read back with an independent minimal GGUF v3 parser: header, metadata llama.cpp
// needs, tensor table, alignment, Q/K row permutation, rope_freqs and dtype conversion.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "model_files/ggml_blocks.h"
#include "model_files/gguf_writer.h"
#include "model_files/model_folder.h"
#include "model_files/test_model.h"
#include "support/temp_dir.h"
#include "util/error.h"

namespace llama31 {
namespace {

struct GgufTensorInfo {
  std::vector<uint64_t> dims;  // innermost first
  uint32_t type = 0;
  uint64_t offset = 0;
};

struct ParsedGguf {
  uint32_t version = 0;
  std::map<std::string, uint32_t> kv_types;
  std::map<std::string, std::string> strings;
  std::map<std::string, uint64_t> integers;  // UINT32 / INT32 / BOOL
  std::map<std::string, float> floats;
  std::map<std::string, std::vector<std::string>> string_arrays;
  std::map<std::string, std::vector<int32_t>> int_arrays;
  std::map<std::string, GgufTensorInfo> tensors;
  std::vector<std::string> tensor_order;
  size_t data_start = 0;
  std::string bytes;
};

class Reader {
 public:
  explicit Reader(const std::string& b) : b_(b) {}
  template <typename T>
  T get() {
    if (pos_ + sizeof(T) > b_.size()) throw std::runtime_error("truncated GGUF");
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str() {
    const auto n = get<uint64_t>();
    if (pos_ + n > b_.size()) throw std::runtime_error("truncated GGUF string");
    std::string s = b_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  size_t pos() const { return pos_; }

 private:
  const std::string& b_;
  size_t pos_ = 0;
};

ParsedGguf parse_gguf(const std::filesystem::path& path) {
  ParsedGguf g;
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  g.bytes = ss.str();
  Reader r(g.bytes);
  if (r.get<uint32_t>() != 0x46554747u) throw std::runtime_error("bad magic");
  g.version = r.get<uint32_t>();
  const auto tensor_count = r.get<uint64_t>();
  const auto kv_count = r.get<uint64_t>();
  for (uint64_t i = 0; i < kv_count; ++i) {
    const std::string key = r.str();
    const auto type = r.get<uint32_t>();
    g.kv_types[key] = type;
    switch (type) {
      case 4: g.integers[key] = r.get<uint32_t>(); break;
      case 5: g.integers[key] = static_cast<uint64_t>(r.get<int32_t>()); break;
      case 6: g.floats[key] = r.get<float>(); break;
      case 7: g.integers[key] = r.get<uint8_t>(); break;
      case 8: g.strings[key] = r.str(); break;
      case 9: {
        const auto element = r.get<uint32_t>();
        const auto n = r.get<uint64_t>();
        for (uint64_t k = 0; k < n; ++k) {
          if (element == 8) g.string_arrays[key].push_back(r.str());
          else if (element == 5) g.int_arrays[key].push_back(r.get<int32_t>());
          else throw std::runtime_error("unexpected array type in " + key);
        }
        break;
      }
      default: throw std::runtime_error("unexpected kv type in " + key);
    }
  }
  for (uint64_t i = 0; i < tensor_count; ++i) {
    const std::string name = r.str();
    GgufTensorInfo t;
    const auto n_dims = r.get<uint32_t>();
    for (uint32_t d = 0; d < n_dims; ++d) t.dims.push_back(r.get<uint64_t>());
    t.type = r.get<uint32_t>();
    t.offset = r.get<uint64_t>();
    g.tensors[name] = t;
    g.tensor_order.push_back(name);
  }
  g.data_start = (r.pos() + 31) / 32 * 32;
  return g;
}

const float* tensor_f32(const ParsedGguf& g, const std::string& name) {
  return reinterpret_cast<const float*>(g.bytes.data() + g.data_start + g.tensors.at(name).offset);
}

class GgufExport : public ::testing::Test {
 protected:
  testing::TempDir dir_{"llama31-gguf"};
};

TEST_F(GgufExport, F32ExportHasLlamaMetadataTensorsAndPermutedRows) {
  TestModelSpec spec;
  const TestModelWeights weights = write_test_model(dir_.path(), spec);
  const auto out = dir_.path() / "model.gguf";
  std::vector<std::string> progress;
  GgufExportOptions options;
  options.type = GgufFileType::F32;
  options.on_tensor = [&](const std::string& name, size_t, size_t) { progress.push_back(name); };
  export_gguf(ModelFolder::open(dir_.path()), out, options);

  const ParsedGguf g = parse_gguf(out);
  EXPECT_EQ(g.version, 3u);
  EXPECT_EQ(g.strings.at("general.architecture"), "llama");
  EXPECT_EQ(g.integers.at("llama.block_count"), 2u);
  EXPECT_EQ(g.integers.at("llama.embedding_length"), 64u);
  EXPECT_EQ(g.integers.at("llama.feed_forward_length"), static_cast<uint64_t>(spec.intermediate_size));
  EXPECT_EQ(g.integers.at("llama.attention.head_count"), 8u);
  EXPECT_EQ(g.integers.at("llama.attention.head_count_kv"), 2u);
  EXPECT_EQ(g.integers.at("llama.rope.dimension_count"), 8u);
  EXPECT_FLOAT_EQ(g.floats.at("llama.rope.freq_base"), static_cast<float>(weights.config.rope_theta));
  EXPECT_EQ(g.strings.at("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(g.strings.at("tokenizer.ggml.pre"), "llama-bpe");
  EXPECT_EQ(g.string_arrays.at("tokenizer.ggml.tokens").size(), 128256u);
  EXPECT_EQ(g.string_arrays.at("tokenizer.ggml.tokens")[128000], "<|begin_of_text|>");
  EXPECT_EQ(g.int_arrays.at("tokenizer.ggml.token_type")[128000], 3);  // control
  EXPECT_EQ(g.int_arrays.at("tokenizer.ggml.token_type")[100], 1);     // normal
  EXPECT_GT(g.string_arrays.at("tokenizer.ggml.merges").size(), 100000u);
  EXPECT_EQ(g.integers.at("tokenizer.ggml.bos_token_id"), 128000u);
  EXPECT_TRUE(g.strings.count("tokenizer.chat_template"));

  // 2 layers x 9 + embeddings, final norm, untied output, rope_freqs; one progress call each.
  EXPECT_EQ(g.tensors.size(), 22u);
  EXPECT_EQ(progress.size(), g.tensors.size());
  for (const auto& [name, t] : g.tensors) EXPECT_EQ(t.offset % 32, 0u) << name;
  const auto& q = g.tensors.at("blk.0.attn_q.weight");
  EXPECT_EQ(q.dims, (std::vector<uint64_t>{64, 64}));
  EXPECT_EQ(g.tensors.at("blk.1.attn_k.weight").dims, (std::vector<uint64_t>{64, 16}));
  EXPECT_EQ(g.tensors.at("token_embd.weight").dims, (std::vector<uint64_t>{64, 128256}));
  EXPECT_TRUE(g.tensors.count("output.weight"));

  // Q rows: GGUF row (head, j, half) is HF row (head, half, j).
  const std::vector<float>& hf_q = weights.tensors.at("model.layers.0.self_attn.q_proj.weight");
  const float* gguf_q = tensor_f32(g, "blk.0.attn_q.weight");
  for (int head = 0; head < 8; ++head) {
    for (int j = 0; j < 4; ++j) {
      for (int half = 0; half < 2; ++half) {
        const int from = head * 8 + half * 4 + j, to = head * 8 + j * 2 + half;
        for (int c = 0; c < 64; ++c) ASSERT_EQ(gguf_q[to * 64 + c], hf_q[static_cast<size_t>(from * 64 + c)]);
      }
    }
  }
  // V is not permuted.
  const std::vector<float>& hf_v = weights.tensors.at("model.layers.1.self_attn.v_proj.weight");
  EXPECT_EQ(std::memcmp(tensor_f32(g, "blk.1.attn_v.weight"), hf_v.data(), hf_v.size() * sizeof(float)), 0);

  // rope_freqs: llama.cpp divides each frequency by its factor; for head_dim 8 and theta 500000 the
  // wavelengths are ~6, ~167, ~4447, ~118000: kept, kept, blended, divided by the factor.
  const auto& rope = g.tensors.at("rope_freqs.weight");
  ASSERT_EQ(rope.dims, (std::vector<uint64_t>{4}));
  const float* factors = tensor_f32(g, "rope_freqs.weight");
  EXPECT_FLOAT_EQ(factors[0], 1.0f);
  EXPECT_FLOAT_EQ(factors[1], 1.0f);
  EXPECT_GT(factors[2], 1.0f);
  EXPECT_LT(factors[2], static_cast<float>(weights.config.rope_scaling->factor));
  EXPECT_FLOAT_EQ(factors[3], static_cast<float>(weights.config.rope_scaling->factor));
}

TEST_F(GgufExport, TiedBf16ExportOmitsOutputAndKeepsNormsF32) {
  TestModelSpec spec;
  spec.tie_word_embeddings = true;
  const TestModelWeights weights = write_test_model(dir_.path(), spec);
  const auto out = dir_.path() / "tied.gguf";
  export_gguf(ModelFolder::open(dir_.path()), out, {});  // default bf16
  const ParsedGguf g = parse_gguf(out);
  EXPECT_FALSE(g.tensors.count("output.weight"));
  EXPECT_EQ(g.integers.at("general.file_type"), 32u);  // MOSTLY_BF16
  EXPECT_EQ(g.tensors.at("token_embd.weight").type, 30u);
  EXPECT_EQ(g.tensors.at("blk.0.attn_norm.weight").type, 0u);
  EXPECT_EQ(g.tensors.at("output_norm.weight").type, 0u);
  // bf16 values are the checkpoint's exactly.
  const auto* embd = reinterpret_cast<const uint16_t*>(g.bytes.data() + g.data_start +
                                                       g.tensors.at("token_embd.weight").offset);
  const std::vector<float>& hf = weights.tensors.at("model.embed_tokens.weight");
  for (size_t i = 0; i < 1000; ++i) ASSERT_EQ(bf16_to_f32(embd[i]), hf[i]) << i;
  // The file ends with the last tensor's data, padded to the alignment.
  const std::string& last = g.tensor_order.back();
  const auto& t = g.tensors.at(last);
  size_t n = 1;
  for (uint64_t d : t.dims) n *= d;
  EXPECT_EQ(g.bytes.size(), g.data_start + (t.offset + n * (t.type == 0 ? 4 : 2) + 31) / 32 * 32);
}

TEST_F(GgufExport, Q8_0ExportHoldsLlamaCppBlocksOfTheWeights) {
  TestModelSpec spec;  // rows of 64: two blocks of 32 each
  const TestModelWeights weights = write_test_model(dir_.path(), spec);
  const auto out = dir_.path() / "q8.gguf";
  GgufExportOptions options;
  options.type = GgufFileType::Q8_0;
  export_gguf(ModelFolder::open(dir_.path()), out, options);
  const ParsedGguf g = parse_gguf(out);
  EXPECT_EQ(g.integers.at("general.file_type"), 7u);  // MOSTLY_Q8_0
  EXPECT_EQ(g.tensors.at("blk.1.ffn_down.weight").type, 8u);  // GGML_TYPE_Q8_0
  EXPECT_EQ(g.tensors.at("token_embd.weight").type, 8u);
  EXPECT_EQ(g.tensors.at("blk.1.ffn_norm.weight").type, 0u);  // 1-D stays F32
  // Block layout {f16 d, int8 qs[32]}: d = max|x| / 127, qs = round(x / d), halves away from zero, as
  // llama.cpp's quantize_row_q8_0_ref computes them (written out here independently).
  const std::vector<float>& hf = weights.tensors.at("model.layers.1.mlp.down_proj.weight");  // [64][192]
  const auto* data = reinterpret_cast<const uint8_t*>(g.bytes.data() + g.data_start +
                                                      g.tensors.at("blk.1.ffn_down.weight").offset);
  const int in = spec.intermediate_size;
  for (int row = 0; row < 64; ++row) {
    for (int block = 0; block < in / 32; ++block) {
      const float* x = hf.data() + static_cast<size_t>(row) * in + static_cast<size_t>(block) * 32;
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
      const float d = amax / 127.0f;
      const uint8_t* stored = data + (static_cast<size_t>(row) * (in / 32) + static_cast<size_t>(block)) * 34;
      uint16_t d_bits = 0;
      std::memcpy(&d_bits, stored, 2);
      ASSERT_EQ(d_bits, f32_to_f16(d)) << row << "," << block;
      for (int i = 0; i < 32; ++i) {
        ASSERT_EQ(static_cast<int8_t>(stored[2 + i]), static_cast<int>(std::round(x[i] * (1.0f / d)))) << row << "," << i;
      }
    }
  }
  // The file size follows from 34 bytes per 32 values.
  const std::string& last = g.tensor_order.back();
  const auto& t = g.tensors.at(last);
  size_t n = 1;
  for (uint64_t dim : t.dims) n *= dim;
  const size_t bytes = t.type == 8 ? n / 32 * 34 : n * 4;
  EXPECT_EQ(g.bytes.size(), g.data_start + (t.offset + bytes + 31) / 32 * 32);
}

// Every 2-D tensor of a quantized export holds, row by row, exactly quantize_ggml_row of the source row
// (Q/K rows permuted), and dequantizes back to within the type's per-block bound of the source values
// (bounds as in ggml_blocks_test: Q8_0 0.6 amax/127, Q4_0 1.01 amax/8, Q5_0 1.01 amax/16, Q4_K range/15,
// Q6_K 2 amax/32). Large tables are checked on their first max_rows rows.
void expect_tensors_match_source(const ParsedGguf& g, const TestModelWeights& weights, size_t max_rows) {
  const LlamaConfig& c = weights.config;
  std::vector<std::pair<std::string, std::string>> names = {{"token_embd.weight", "model.embed_tokens.weight"}};
  if (!c.tie_word_embeddings) names.emplace_back("output.weight", "lm_head.weight");
  const std::map<std::string, std::string> layer = {
      {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"}, {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"}};
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    for (const auto& [gguf, hf] : layer) {
      names.emplace_back("blk." + std::to_string(l) + "." + gguf + ".weight",
                         "model.layers." + std::to_string(l) + "." + hf + ".weight");
    }
  }
  for (const auto& [gguf_name, hf_name] : names) {
    const GgufTensorInfo& t = g.tensors.at(gguf_name);
    const auto type = ggml_type_from_number(t.type);
    ASSERT_TRUE(type.has_value()) << gguf_name;
    const auto cols = static_cast<int64_t>(t.dims[0]);
    const size_t rows = static_cast<size_t>(t.dims[1]);
    const size_t row_size = ggml_row_bytes(*type, cols);
    const std::vector<float>& source = weights.tensors.at(hf_name);
    ASSERT_EQ(source.size(), rows * static_cast<size_t>(cols)) << gguf_name;
    int64_t heads = 0;
    if (gguf_name.ends_with("attn_q.weight")) heads = c.num_attention_heads;
    if (gguf_name.ends_with("attn_k.weight")) heads = c.num_key_value_heads;
    const auto head_dim = static_cast<size_t>(c.head_dim);
    const auto* data = reinterpret_cast<const uint8_t*>(g.bytes.data() + g.data_start + t.offset);
    std::vector<uint8_t> expected(row_size);
    std::vector<float> back(static_cast<size_t>(cols));
    for (size_t row = 0; row < std::min(rows, max_rows); ++row) {
      size_t from = row;  // GGUF row (head, j, half) is HF row (head, half, j)
      if (heads > 0) from = row / head_dim * head_dim + row % 2 * (head_dim / 2) + row % head_dim / 2;
      const float* x = source.data() + from * static_cast<size_t>(cols);
      quantize_ggml_row(*type, x, cols, expected.data());
      ASSERT_EQ(std::memcmp(data + row * row_size, expected.data(), row_size), 0) << gguf_name << " row " << row;
      dequantize_ggml_row(*type, data + row * row_size, back.data(), cols);
      const auto block = static_cast<size_t>(ggml_block_values(*type));
      for (size_t start = 0; start < back.size(); start += block) {
        float amax = 0, lo = 0, hi = 0;
        for (size_t i = start; i < start + block; ++i) {
          amax = std::max(amax, std::fabs(x[i]));
          lo = std::min(lo, x[i]);
          hi = std::max(hi, x[i]);
        }
        float limit = 0;
        switch (*type) {
          case GgmlType::Q8_0: limit = 0.6f * amax / 127; break;
          case GgmlType::Q4_0: limit = 1.01f * amax / 8; break;
          case GgmlType::Q5_0: limit = 1.01f * amax / 16; break;
          case GgmlType::Q4_K: limit = (hi - lo) / 15; break;
          case GgmlType::Q6_K: limit = 2 * amax / 32; break;
          default: FAIL() << gguf_name << " has unexpected type " << ggml_type_name(*type);
        }
        for (size_t i = start; i < start + block; ++i) {
          ASSERT_LE(std::fabs(back[i] - x[i]), limit) << gguf_name << " row " << row << " value " << i;
        }
      }
    }
  }
}

// Offsets follow from each tensor's size in whole blocks, aligned to 32, and the file ends after the last.
void expect_sizes_consistent(const ParsedGguf& g) {
  uint64_t offset = 0;
  for (const std::string& name : g.tensor_order) {
    const GgufTensorInfo& t = g.tensors.at(name);
    ASSERT_EQ(t.offset, offset) << name;
    const auto type = ggml_type_from_number(t.type);
    ASSERT_TRUE(type.has_value()) << name;
    uint64_t rows = 1;
    for (size_t d = 1; d < t.dims.size(); ++d) rows *= t.dims[d];
    offset = (offset + rows * ggml_row_bytes(*type, static_cast<int64_t>(t.dims[0])) + 31) / 32 * 32;
  }
  EXPECT_EQ(g.bytes.size(), g.data_start + offset);
}

TEST_F(GgufExport, Q4_0ExportFollowsLlamaQuantize) {
  TestModelSpec spec;  // rows of 64 and 192: whole blocks of 32, not of 256
  const TestModelWeights weights = write_test_model(dir_.path(), spec);
  const auto out = dir_.path() / "q4_0.gguf";
  GgufExportOptions options;
  options.type = GgufFileType::Q4_0;
  export_gguf(ModelFolder::open(dir_.path()), out, options);
  const ParsedGguf g = parse_gguf(out);
  EXPECT_EQ(g.integers.at("general.file_type"), 2u);  // LLAMA_FTYPE_MOSTLY_Q4_0
  EXPECT_EQ(g.integers.at("general.quantization_version"), 2u);
  EXPECT_EQ(g.tensors.at("token_embd.weight").type, 2u);
  EXPECT_EQ(g.tensors.at("blk.0.attn_q.weight").type, 2u);
  EXPECT_EQ(g.tensors.at("blk.1.attn_v.weight").type, 2u);
  EXPECT_EQ(g.tensors.at("blk.1.ffn_down.weight").type, 2u);
  EXPECT_EQ(g.tensors.at("output.weight").type, 8u);  // Q6_K wanted, rows of 64 are not a super-block: Q8_0
  EXPECT_EQ(g.tensors.at("blk.0.ffn_norm.weight").type, 0u);
  EXPECT_EQ(g.tensors.at("rope_freqs.weight").type, 0u);
  expect_sizes_consistent(g);
  expect_tensors_match_source(g, weights, 4096);
}

TEST_F(GgufExport, Q4_K_MExportFollowsLlamaQuantize) {
  TestModelSpec spec;
  spec.hidden_size = 256;  // K super-blocks fit the attention and gate/up rows; ffn_down rows of 320 do not
  spec.intermediate_size = 320;
  spec.head_dim = 32;
  spec.num_hidden_layers = 8;  // more-bits layers: 0, 7 (first / last eighth), 3, 6 (every third)
  const TestModelWeights weights = write_test_model(dir_.path(), spec);
  const auto out = dir_.path() / "q4_k_m.gguf";
  GgufExportOptions options;
  options.type = GgufFileType::Q4_K_M;
  export_gguf(ModelFolder::open(dir_.path()), out, options);
  const ParsedGguf g = parse_gguf(out);
  EXPECT_EQ(g.integers.at("general.file_type"), 15u);  // LLAMA_FTYPE_MOSTLY_Q4_K_M
  EXPECT_EQ(g.integers.at("general.quantization_version"), 2u);
  EXPECT_EQ(g.tensors.at("token_embd.weight").type, 12u);
  EXPECT_EQ(g.tensors.at("output.weight").type, 14u);
  for (int l = 0; l < 8; ++l) {
    const std::string blk = "blk." + std::to_string(l) + ".";
    const bool more_bits = l == 0 || l == 3 || l == 6 || l == 7;
    EXPECT_EQ(g.tensors.at(blk + "attn_v.weight").type, more_bits ? 14u : 12u) << l;
    EXPECT_EQ(g.tensors.at(blk + "ffn_down.weight").type, more_bits ? 8u : 6u) << l;  // Q6_K -> Q8_0, Q4_K -> Q5_0
    for (const char* name : {"attn_q.weight", "attn_k.weight", "attn_output.weight", "ffn_gate.weight", "ffn_up.weight"}) {
      EXPECT_EQ(g.tensors.at(blk + name).type, 12u) << blk << name;
    }
    EXPECT_EQ(g.tensors.at(blk + "attn_norm.weight").type, 0u);
  }
  expect_sizes_consistent(g);
  expect_tensors_match_source(g, weights, 2048);
}

// llama-quantize's choices on the published shapes (llama_tensor_get_type, no imatrix).
TEST(GgufTensorTypes, PublishedModels) {
  const GgufTypeContext llama8b{32, false, false};
  const std::vector<int64_t> square = {4096, 4096}, down = {4096, 14336}, embd = {128256, 4096};
  // Q4_K_M attn_v / ffn_down: Q6_K on layers 0-3 and 28-31 and every third from 4 (6, 9, ..., 27).
  for (int l = 0; l < 32; ++l) {
    const bool more = l < 4 || l >= 28 || (l - 4) % 3 == 2;
    const std::string blk = "blk." + std::to_string(l) + ".";
    EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_K_M, blk + "attn_v.weight", {1024, 4096}, llama8b),
              more ? GgmlType::Q6_K : GgmlType::Q4_K) << l;
    EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_K_M, blk + "ffn_down.weight", down, llama8b),
              more ? GgmlType::Q6_K : GgmlType::Q4_K) << l;
    EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_K_M, blk + "attn_q.weight", square, llama8b), GgmlType::Q4_K);
    EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_0, blk + "attn_v.weight", {1024, 4096}, llama8b), GgmlType::Q4_0);
  }
  EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_K_M, "token_embd.weight", embd, llama8b), GgmlType::Q4_K);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_K_M, "output.weight", embd, llama8b), GgmlType::Q6_K);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_0, "token_embd.weight", embd, llama8b), GgmlType::Q4_0);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_0, "output.weight", embd, llama8b), GgmlType::Q6_K);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::Q8_0, "output.weight", embd, llama8b), GgmlType::Q8_0);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::BF16, "output.weight", embd, llama8b), GgmlType::BF16);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_K_M, "blk.0.attn_norm.weight", {4096}, llama8b), GgmlType::F32);
  // 70B: the Q4_K attn_v layers go up to Q5_K.
  const GgufTypeContext llama70b{80, false, true};
  EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_K_M, "blk.11.attn_v.weight", {1024, 8192}, llama70b), GgmlType::Q5_K);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_K_M, "blk.12.attn_v.weight", {1024, 8192}, llama70b), GgmlType::Q6_K);
  // Tied embeddings (Llama 3.2 1B shapes): token_embd is typed as the output.
  const GgufTypeContext tied{16, true, false};
  EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_K_M, "token_embd.weight", {128256, 2048}, tied), GgmlType::Q6_K);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_0, "token_embd.weight", {128256, 2048}, tied), GgmlType::Q6_K);
  // Rows that are not whole blocks: Q4_K -> Q5_0, Q6_K -> Q8_0, then F16.
  EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_K_M, "blk.1.ffn_up.weight", {100, 96}, llama8b), GgmlType::Q5_0);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_K_M, "blk.1.ffn_up.weight", {100, 40}, llama8b), GgmlType::F16);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::Q4_0, "blk.1.ffn_up.weight", {100, 40}, llama8b), GgmlType::F16);
}

TEST(GgufFileTypes, NamesAndNumbers) {
  EXPECT_EQ(gguf_file_type_from_name("q4_k_m"), GgufFileType::Q4_K_M);
  EXPECT_EQ(gguf_file_type_from_name("Q4_K_M"), GgufFileType::Q4_K_M);
  EXPECT_EQ(gguf_file_type_from_name("bf16"), GgufFileType::BF16);
  EXPECT_FALSE(gguf_file_type_from_name("q4_k").has_value());
  EXPECT_EQ(gguf_file_type_names(), "bf16, f16, f32, q8_0, q4_0, q4_k_m");
  EXPECT_EQ(static_cast<uint32_t>(GgufFileType::Q4_0), 2u);
  EXPECT_EQ(static_cast<uint32_t>(GgufFileType::Q8_0), 7u);
  EXPECT_EQ(static_cast<uint32_t>(GgufFileType::Q4_K_M), 15u);
  EXPECT_EQ(static_cast<uint32_t>(GgufFileType::BF16), 32u);
}

TEST(GgufPermutation, RoundTripsEveryRowOnce) {
  std::vector<uint8_t> rows(2 * 6);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<uint8_t>(i);
  // 2 heads of head_dim 6, one byte per row: head 0 rows 0..5 become 0,3,1,4,2,5.
  const auto permuted = permute_rotary_rows(rows, 2, 6, 1);
  EXPECT_EQ(permuted, (std::vector<uint8_t>{0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11}));
  EXPECT_THROW(permute_rotary_rows(rows, 3, 6, 1), Error);
}

}  // namespace
}  // namespace llama31
