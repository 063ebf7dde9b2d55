// Reading GGUF files: a tiny Llama 3.1 folder exported to GGUF (F32, BF16, Q8_0, Q4_0, Q4_K_M) and opened
// again gives back its config and its tensors under their Hugging Face names with the Q/K rows in their
// original order; malformed files give errors naming what is wrong. (The tokenizer and the logits of a
// GGUF model: tests/engine/gguf_model_test.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model_files/ggml_blocks.h"
#include "model_files/gguf_model.h"
#include "model_files/gguf_reader.h"
#include "model_files/gguf_writer.h"
#include "model_files/model_folder.h"
#include "model_files/model_files_test_util.h"
#include "model_files/test_model.h"
#include "support/temp_dir.h"
#include "util/progress.h"

namespace llama31 {
namespace {

using testing::expect_error;
using testing::TempDir;
using testing::write_bytes;

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A tiny model folder and its GGUF export of one file type. Rows are whole K-quant super-blocks of 256
// only where a test needs them: the 128,256-row embedding makes every width cost.
struct Exported {
  TempDir dir{"llama31-gguf-read"};
  std::filesystem::path folder;
  std::filesystem::path gguf;
};

std::unique_ptr<Exported> export_model(GgufFileType type, DType folder_dtype = DType::F32, bool tied = false,
                                       int hidden = 64) {
  Progress::set_enabled(false);
  auto e = std::make_unique<Exported>();
  e->folder = e->dir.path() / "model";
  e->gguf = e->dir.path() / "model.gguf";
  TestModelSpec spec;
  spec.hidden_size = hidden;
  spec.intermediate_size = 2 * hidden;
  spec.num_attention_heads = 4;
  spec.num_key_value_heads = 2;
  spec.head_dim = hidden / 4;
  spec.dtype = folder_dtype;
  spec.tie_word_embeddings = tied;
  write_test_model(e->folder, spec);
  GgufExportOptions options;
  options.type = type;
  export_gguf(ModelFolder::open(e->folder), e->gguf, options);
  return e;
}

// The Q8_0 export, shared by the tests that only read it.
const Exported& q8_0_export() {
  static const std::unique_ptr<Exported> e = export_model(GgufFileType::Q8_0);
  return *e;
}

std::vector<float> as_floats(const TensorView& view) {
  std::vector<float> out(static_cast<size_t>(view.numel()));
  const int64_t n = view.shape.back();
  const size_t row = row_bytes(view.dtype, n);
  for (int64_t r = 0; r < view.numel() / n; ++r) {
    convert_to_f32(view.dtype, view.data + static_cast<size_t>(r) * row, out.data() + r * n, static_cast<size_t>(n));
  }
  return out;
}

TEST(GgufReader, F32ExportReadsBackEveryTensorBitwiseAndTheConfig) {
  const auto e = export_model(GgufFileType::F32);
  const ModelFolder folder = ModelFolder::open(e->folder);
  const ModelFolder gguf = ModelFolder::open(e->gguf);
  ASSERT_TRUE(gguf.is_gguf());
  const LlamaConfig& a = folder.config;
  const LlamaConfig& b = gguf.config;
  EXPECT_EQ(b.hidden_size, a.hidden_size);
  EXPECT_EQ(b.intermediate_size, a.intermediate_size);
  EXPECT_EQ(b.num_hidden_layers, a.num_hidden_layers);
  EXPECT_EQ(b.num_attention_heads, a.num_attention_heads);
  EXPECT_EQ(b.num_key_value_heads, a.num_key_value_heads);
  EXPECT_EQ(b.head_dim, a.head_dim);
  EXPECT_EQ(b.vocab_size, a.vocab_size);
  EXPECT_EQ(b.max_position_embeddings, a.max_position_embeddings);
  EXPECT_EQ(b.tie_word_embeddings, a.tie_word_embeddings);
  EXPECT_FLOAT_EQ(static_cast<float>(b.rope_theta), static_cast<float>(a.rope_theta));
  EXPECT_FLOAT_EQ(static_cast<float>(b.rms_norm_eps), static_cast<float>(a.rms_norm_eps));
  EXPECT_EQ(b.bos_token_id, 128000);
  // Every end token: <|end_of_text|>, <|eom_id|>, <|eot_id|>.
  EXPECT_EQ(b.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  // llama3 rope scaling arrives as per-dimension factors; the frequencies agree to float precision.
  ASSERT_EQ(b.rope_frequency_factors.size(), static_cast<size_t>(a.head_dim / 2));
  const auto fa = rope_inverse_frequencies(a);
  const auto fb = rope_inverse_frequencies(b);
  for (size_t i = 0; i < fa.size(); ++i) EXPECT_NEAR(fb[i], fa[i], 1e-6 * fa[i]) << "dimension " << i;
  EXPECT_GT(b.rope_frequency_factors.back(), 1.0);  // the longest wavelengths are scaled

  for (const std::string& name : folder.weights.names()) {
    const TensorView& want = folder.weights.get(name);
    const TensorView* got = gguf.weights.find(name);
    ASSERT_NE(got, nullptr) << name;
    EXPECT_EQ(got->dtype, DType::F32) << name;
    EXPECT_EQ(got->shape, want.shape) << name;
    EXPECT_EQ(as_floats(*got), as_floats(want)) << name << " (Q/K rows must be back in Hugging Face order)";
  }
  EXPECT_EQ(gguf.weights.names().size(), folder.weights.names().size());
}

TEST(GgufReader, Bf16ExportIsReadWithoutConversion) {
  const auto e = export_model(GgufFileType::BF16, DType::BF16, /*tied=*/true);
  const ModelFolder folder = ModelFolder::open(e->folder);
  const ModelFolder gguf = ModelFolder::open(e->gguf);
  EXPECT_TRUE(gguf.config.tie_word_embeddings);
  EXPECT_EQ(gguf.weights.find("lm_head.weight"), nullptr);
  for (const char* name : {"model.layers.1.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                           "model.layers.0.mlp.down_proj.weight", "model.embed_tokens.weight"}) {
    const TensorView& want = folder.weights.get(name);
    const TensorView& got = gguf.weights.get(name);
    ASSERT_EQ(got.dtype, DType::BF16) << name;
    ASSERT_EQ(got.nbytes, want.nbytes) << name;
    EXPECT_EQ(std::memcmp(got.data, want.data, want.nbytes), 0) << name;
  }
}

TEST(GgufReader, Q8_0AndQ4_0TensorsHoldTheNumbersLlamaCppRoundedTo) {
  const auto q4_0 = export_model(GgufFileType::Q4_0);
  for (const auto& [e, dtype] : {std::pair{&q8_0_export(), DType::Q8_0}, std::pair{static_cast<const Exported*>(q4_0.get()), DType::Q4_0}}) {
    const ModelFolder folder = ModelFolder::open(e->folder);
    const ModelFolder gguf = ModelFolder::open(e->gguf);
    for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
                             "model.layers.1.mlp.gate_proj.weight"}) {
      const TensorView& got = gguf.weights.get(name);
      ASSERT_EQ(got.dtype, dtype) << name;
      // The same weights quantized directly by the in-memory quantizer: identical bytes.
      const TensorView& source = folder.weights.get(name);
      const std::vector<float> values = source.values();
      const int64_t n = source.shape.back();
      std::vector<std::byte> expected(row_bytes(dtype, n) * static_cast<size_t>(source.numel() / n));
      for (int64_t r = 0; r < source.numel() / n; ++r) {
        void* dst = expected.data() + static_cast<size_t>(r) * row_bytes(dtype, n);
        if (dtype == DType::Q8_0) {
          quantize_row_q8_0(values.data() + r * n, static_cast<size_t>(n), dst);
        } else {
          quantize_row_q4_0(values.data() + r * n, static_cast<size_t>(n), dst);
        }
      }
      ASSERT_EQ(got.nbytes, expected.size()) << name;
      EXPECT_EQ(std::memcmp(got.data, expected.data(), expected.size()), 0) << dtype_name(dtype) << " " << name;
    }
  }
}

TEST(GgufReader, KQuantTensorsKeepTheirSuperBlocks) {
  const auto e = export_model(GgufFileType::Q4_K_M, DType::F32, false, /*hidden=*/256);
  const ModelFolder folder = ModelFolder::open(e->folder);
  const ModelFolder gguf = ModelFolder::open(e->gguf);
  const GgufFile file(e->gguf);
  int k_types = 0;
  for (const GgufTensorInfo& t : file.tensors()) {
    if (t.type != GgmlType::Q4_K && t.type != GgmlType::Q6_K) continue;
    ++k_types;
    const std::string name = hf_tensor_name_for_gguf(t.name);
    const TensorView& got = gguf.weights.get(name);
    ASSERT_EQ(got.dtype, t.type == GgmlType::Q4_K ? DType::Q4_K : DType::Q6_K) << name;
    ASSERT_EQ(got.nbytes, t.nbytes) << name;
    const int64_t n = t.shape.back();
    const int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1;
    const bool rotary = name.find("q_proj") != std::string::npos || name.find("k_proj") != std::string::npos;
    // The file's bytes as they are (Q/K: the same rows, back in Hugging Face order; compared as values below).
    if (!rotary) {
      EXPECT_EQ(std::memcmp(got.data, t.data, t.nbytes), 0) << name;
    }
    // Sampled rows decode to exactly the values of the file's rows.
    std::vector<float> values(static_cast<size_t>(n)), decoded(static_cast<size_t>(n));
    for (int64_t r = 0; r < rows && !rotary; r += std::max<int64_t>(1, rows / 7)) {
      dequantize_ggml_row(t.type, t.data + static_cast<size_t>(r) * ggml_row_bytes(t.type, n), values.data(), n);
      convert_to_f32(got.dtype, got.data + static_cast<size_t>(r) * row_bytes(got.dtype, n), decoded.data(),
                     static_cast<size_t>(n));
      ASSERT_EQ(std::memcmp(values.data(), decoded.data(), values.size() * sizeof(float)), 0) << t.name << " row " << r;
    }
    const std::vector<float> want = folder.weights.get(name).values();
    const std::vector<float> have = as_floats(got);
    // Relative RMS error of 4-bit (Q4_K) / 6-bit (Q6_K) quantization of Gaussian weights.
    double err = 0, ref = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      err += (have[i] - want[i]) * (have[i] - want[i]);
      ref += want[i] * want[i];
    }
    EXPECT_LT(std::sqrt(err / ref), t.type == GgmlType::Q4_K ? 0.12 : 0.03) << t.name;
    EXPECT_GT(std::sqrt(err / ref), 0.0) << t.name << " cannot be exact after quantization";
  }
  EXPECT_GT(k_types, 10);
}

TEST(GgufReader, NamesEveryGgufTensorOfTheLlamaArchitecture) {
  EXPECT_EQ(hf_tensor_name_for_gguf("blk.12.ffn_down.weight"), "model.layers.12.mlp.down_proj.weight");
  EXPECT_EQ(hf_tensor_name_for_gguf("blk.0.attn_output.weight"), "model.layers.0.self_attn.o_proj.weight");
  EXPECT_EQ(hf_tensor_name_for_gguf("output.weight"), "lm_head.weight");
  EXPECT_EQ(hf_tensor_name_for_gguf("blk.x.attn_q.weight"), "");
  EXPECT_EQ(hf_tensor_name_for_gguf("blk.1.attn_qkv.weight"), "");
  EXPECT_EQ(hf_tensor_name_for_gguf("rope_freqs.weight"), "");
}

// A small valid GGUF file (metadata and two tensors) to damage.
std::string small_gguf(const std::filesystem::path& path) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_uint32("llama.block_count", 1);
  w.add_string_array("tokenizer.ggml.tokens", {"a", "b", "c"});
  std::vector<uint8_t> data(4 * 32 * 2);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  w.add_tensor("token_embd.weight", DType::F32, {2, 32}, std::vector<uint8_t>(data.begin(), data.begin() + 256));
  w.add_tensor("output_norm.weight", DType::F32, {32}, std::vector<uint8_t>(128, 1));
  w.write(path);
  return read_bytes(path);
}

TEST(GgufReader, ReadsTheMetadataAndTensorDirectory) {
  TempDir dir;
  const auto path = dir.path() / "small.gguf";
  small_gguf(path);
  const GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_uint("llama.block_count"), 1u);
  EXPECT_EQ(f.get_array("tokenizer.ggml.tokens").size(), 3u);
  ASSERT_EQ(f.tensors().size(), 2u);
  const GgufTensorInfo* t = f.find_tensor("token_embd.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(t->nbytes, 256u);
  EXPECT_EQ(static_cast<uint8_t>(t->data[1]), 7);
  expect_error([&] { f.get_string("llama.block_count"); }, {"llama.block_count", "not a string"});
  expect_error([&] { f.get_uint("missing.key"); }, {"missing.key", "missing"});
  EXPECT_TRUE(is_gguf_file(path));
  EXPECT_FALSE(is_gguf_file(dir.path()));
}

TEST(GgufReader, EveryTruncationIsAnErrorNamingTheFile) {
  TempDir dir;
  const auto good = dir.path() / "small.gguf";
  const std::string bytes = small_gguf(good);
  const auto cut = dir.path() / "cut.gguf";
  for (size_t length = 0; length < bytes.size(); length += (length < 400 ? 1 : 17)) {
    write_bytes(cut, bytes.substr(0, length));
    expect_error([&] { GgufFile f(cut); }, {cut.string()});
  }
}

TEST(GgufReader, CorruptHeadersAreErrorsNamingTheProblem) {
  TempDir dir;
  const auto good = dir.path() / "small.gguf";
  const std::string bytes = small_gguf(good);
  const auto bad = dir.path() / "bad.gguf";
  auto damaged = [&](size_t at, const void* value, size_t size) {
    std::string b = bytes;
    std::memcpy(b.data() + at, value, size);
    write_bytes(bad, b);
  };
  const uint32_t version1 = 1;
  damaged(4, &version1, 4);
  expect_error([&] { GgufFile f(bad); }, {"version 1"});
  const uint64_t huge = uint64_t{1} << 60;
  damaged(8, &huge, 8);  // tensor count
  expect_error([&] { GgufFile f(bad); }, {"tensor count", "more than the file holds"});
  damaged(16, &huge, 8);  // metadata count
  expect_error([&] { GgufFile f(bad); }, {"metadata count"});
  write_bytes(bad, "GGML" + bytes.substr(4));
  expect_error([&] { GgufFile f(bad); }, {"not a GGUF file"});

  // The tensor directory's fields, found by the first tensor's name.
  const size_t name_at = bytes.find("token_embd.weight");
  ASSERT_NE(name_at, std::string::npos);
  const size_t dims_at = name_at + std::strlen("token_embd.weight");
  const size_t type_at = dims_at + 4 + 2 * 8;
  const size_t offset_at = type_at + 4;
  const uint32_t unknown_type = 23;  // IQ4_XS
  damaged(type_at, &unknown_type, 4);
  expect_error([&] { GgufFile f(bad); }, {"token_embd.weight", "ggml type 23"});
  const uint32_t q4_k = 12;  // rows of 32 are not whole super-blocks of 256
  damaged(type_at, &q4_k, 4);
  expect_error([&] { GgufFile f(bad); }, {"token_embd.weight", "whole"});
  const uint64_t beyond = 1 << 20;
  damaged(offset_at, &beyond, 8);
  expect_error([&] { GgufFile f(bad); }, {"token_embd.weight", "beyond the end"});
  const uint64_t unaligned = 4;
  damaged(offset_at, &unaligned, 8);
  expect_error([&] { GgufFile f(bad); }, {"token_embd.weight", "aligned"});
  const uint32_t five_dims = 5;
  damaged(dims_at, &five_dims, 4);
  expect_error([&] { GgufFile f(bad); }, {"token_embd.weight", "dimensions"});
}

TEST(GgufReader, ModelsOfOtherArchitecturesOrTokenizersAreRefused) {
  TempDir dir;
  const auto path = dir.path() / "other.gguf";
  GgufWriter w;
  w.add_string("general.architecture", "qwen2");
  w.add_string_array("tokenizer.ggml.tokens", {"a"});
  w.write(path);
  expect_error([&] { ModelFolder::open(path); }, {path.string(), "qwen2"});

  std::string bytes = read_bytes(q8_0_export().gguf);
  const size_t at = bytes.find("llama-bpe");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 9, "qwen2-bpe");
  const auto changed = dir.path() / "pre.gguf";
  write_bytes(changed, bytes);
  const ModelFolder model = ModelFolder::open(changed);
  expect_error([&] { (void)model.tokenizer_document(); }, {"tokenizer.ggml.pre", "qwen2-bpe"});
}

// The tokenizer's tables come from tokenizer.ggml.*: normal tokens become the vocabulary (id order),
// control and user-defined ones added tokens, unused ones nothing; merges stay "a b" strings, and an entry
// of another type is an error naming the key.
TEST(GgufReader, TokenizerTablesSplitTheVocabularyByTokenType) {
  TempDir dir;
  const auto write = [&](bool string_merges) {
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_string("tokenizer.ggml.model", "gpt2");
    w.add_string("tokenizer.ggml.pre", "llama-bpe");
    w.add_string_array("tokenizer.ggml.tokens", {"a", "b", "ab", "<|x|>", "<pad>", "<u>"});
    w.add_int32_array("tokenizer.ggml.token_type", {1, 1, 1, 3, 5, 4});
    if (string_merges) w.add_string_array("tokenizer.ggml.merges", {"a b"});
    else w.add_int32_array("tokenizer.ggml.merges", {7});
    const auto path = dir.path() / (string_merges ? "ok.gguf" : "bad.gguf");
    w.write(path);
    return path;
  };
  const GgufFile file(write(true));
  const GgufTokenizerParts parts = gguf_tokenizer_parts(file);
  EXPECT_EQ(parts.vocab, (std::vector<std::pair<std::string, int>>{{"a", 0}, {"b", 1}, {"ab", 2}}));
  EXPECT_EQ(parts.merges, std::vector<std::string>{"a b"});
  EXPECT_FALSE(parts.rest["model"].contains("vocab"));
  ASSERT_EQ(parts.rest["added_tokens"].size(), 2u);
  EXPECT_EQ(parts.rest["added_tokens"][0]["content"], "<|x|>");
  EXPECT_EQ(parts.rest["added_tokens"][0]["special"], true);
  EXPECT_EQ(parts.rest["added_tokens"][1]["id"], 5);
  EXPECT_EQ(parts.rest["added_tokens"][1]["special"], false);
  // The assembled tokenizer.json has the same vocabulary as an object and the merges as an array.
  const nlohmann::json document = gguf_tokenizer_document(file);
  EXPECT_EQ(document["model"]["vocab"], (nlohmann::json{{"a", 0}, {"b", 1}, {"ab", 2}}));
  EXPECT_EQ(document["model"]["merges"], nlohmann::json::array({"a b"}));

  const GgufFile bad(write(false));
  expect_error([&] { (void)gguf_tokenizer_parts(bad); }, {"tokenizer.ggml.merges", "non-string"});
}

}  // namespace
}  // namespace llama31
