// A GGUF file opened as a ModelFolder is a source for export_gguf and quantize_folder: the same file type
// written again is the same file, what would be rounded a second time is named, Q5_0 (run as Q8_0) keeps
// its numbers, rope_freqs becomes config.json's rope_scaling, and quantize writes a folder that loads.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "model_files/gguf_writer.h"
#include "model_files/model_folder.h"
#include "model_files/quantize_folder.h"
#include "model_files/test_model.h"
#include "support/temp_dir.h"
#include "util/error.h"
#include "util/progress.h"

namespace llama31 {
namespace {

std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

class GgufSource : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Progress::set_enabled(false);
    dir_ = new testing::TempDir("llama31-gguf-source");
    write_test_model(dir_->path() / "model");  // rows of 64 and 192: Q4_K_M falls back to Q5_0 and Q8_0
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::filesystem::path path(const std::string& name) { return dir_->path() / name; }
  static std::filesystem::path exported(const std::filesystem::path& source, GgufFileType type, const std::string& name) {
    GgufExportOptions options;
    options.type = type;
    export_gguf(ModelFolder::open(source, QuantizedForm::Dense), path(name), options);
    return path(name);
  }
  static inline testing::TempDir* dir_ = nullptr;
};

TEST_F(GgufSource, TheSameFileTypeWrittenAgainIsTheSameFile) {
  for (GgufFileType type : {GgufFileType::Q8_0, GgufFileType::Q4_0, GgufFileType::Q4_K_M, GgufFileType::BF16}) {
    const std::string name(gguf_file_type_name(type));
    const auto first = exported(path("model"), type, name + ".gguf");
    const auto second = exported(first, type, name + "-again.gguf");
    // Metadata (vocabulary, token types, merges, special ids, chat template, general.name) and tensors.
    EXPECT_TRUE(file_bytes(first) == file_bytes(second)) << name;
  }
}

TEST_F(GgufSource, RequantizedSourcesNameWhatIsRoundedAgain) {
  const auto q4km = exported(path("model"), GgufFileType::Q4_K_M, "named-q4km.gguf");
  const ModelFolder folder = ModelFolder::open(path("model"), QuantizedForm::Dense);
  const ModelFolder file = ModelFolder::open(q4km, QuantizedForm::Dense);
  EXPECT_TRUE(gguf_requantized_sources(folder, GgufFileType::Q4_K_M).empty());  // bf16 weights
  // 64-wide rows: Q5_0 for the Q4_K tensors, Q8_0 for Q6_K (layer 1's ffn_down, the head).
  EXPECT_EQ(gguf_requantized_sources(file, GgufFileType::Q8_0), (std::vector<std::string>{"Q5_0"}));
  EXPECT_EQ(gguf_requantized_sources(file, GgufFileType::Q4_0), (std::vector<std::string>{"Q5_0", "Q8_0"}));
  EXPECT_TRUE(gguf_requantized_sources(file, GgufFileType::Q4_K_M).empty());  // copied as stored
  EXPECT_TRUE(gguf_requantized_sources(file, GgufFileType::BF16).empty());
}

TEST_F(GgufSource, Q5_0WrittenAsQ8_0KeepsTheNumbersItRunsWith) {
  const auto q4km = exported(path("model"), GgufFileType::Q4_K_M, "q5-q4km.gguf");
  const auto q8 = exported(q4km, GgufFileType::Q8_0, "q5-q8.gguf");
  const ModelFolder a = ModelFolder::open(q4km, QuantizedForm::Dense);
  const ModelFolder b = ModelFolder::open(q8, QuantizedForm::Dense);
  for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
                           "model.embed_tokens.weight", "lm_head.weight"}) {
    const TensorView& x = a.weights.get(name);
    const TensorView& y = b.weights.get(name);
    ASSERT_EQ(x.dtype, DType::Q8_0) << name;
    ASSERT_EQ(y.dtype, DType::Q8_0) << name;
    ASSERT_EQ(x.nbytes, y.nbytes) << name;
    EXPECT_EQ(std::memcmp(x.data, y.data, x.nbytes), 0) << name;
  }
}

TEST_F(GgufSource, RopeScalingFromStoredFactors) {
  LlamaConfig config = ModelFolder::open(path("model")).config;
  ASSERT_TRUE(config.rope_scaling.has_value());
  const std::vector<float> factors = llama3_rope_factors(config);
  LlamaConfig from_gguf = config;
  from_gguf.rope_scaling.reset();
  from_gguf.rope_frequency_factors.assign(factors.begin(), factors.end());
  const std::optional<RopeScaling> scaling = llama3_rope_scaling_for_factors(from_gguf, "x.gguf");
  ASSERT_TRUE(scaling.has_value());
  EXPECT_EQ(scaling->rope_type, "llama3");
  EXPECT_EQ(scaling->factor, 8.0);
  EXPECT_EQ(scaling->low_freq_factor, 1.0);
  EXPECT_EQ(scaling->high_freq_factor, 4.0);
  EXPECT_EQ(scaling->original_max_position_embeddings, 8192);
  from_gguf.rope_frequency_factors.assign(factors.size(), 1.0);
  EXPECT_FALSE(llama3_rope_scaling_for_factors(from_gguf, "x.gguf").has_value());
  from_gguf.rope_frequency_factors.assign(factors.begin(), factors.end());
  from_gguf.rope_frequency_factors[1] *= 1.5;
  try {
    (void)llama3_rope_scaling_for_factors(from_gguf, "x.gguf");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x.gguf: rope_freqs.weight"), std::string::npos) << e.what();
  }
}

TEST_F(GgufSource, QuantizeFolderFromAGgufFileWritesAFolderThatLoads) {
  const auto q8 = exported(path("model"), GgufFileType::Q8_0, "fp8-source.gguf");
  const ModelFolder source = ModelFolder::open(q8, QuantizedForm::Dense);
  const QuantizeReport report = quantize_folder(source, path("fp8"), QuantizeType::Fp8, false);
  EXPECT_EQ(report.layers_quantized, 6);
  const ModelFolder out = ModelFolder::open(path("fp8"));
  EXPECT_EQ(out.config.torch_dtype, "bfloat16");
  ASSERT_TRUE(out.config.rope_scaling.has_value());
  EXPECT_EQ(out.config.rope_scaling->factor, 8.0);
  EXPECT_EQ(out.weights.get("model.layers.0.mlp.up_proj.weight").dtype, DType::F8_E4M3);
  EXPECT_EQ(out.weights.get("model.layers.0.self_attn.q_proj.weight").dtype, DType::BF16);  // kept, widened
  EXPECT_EQ(out.weights.get("model.embed_tokens.weight").dtype, DType::BF16);
  // The tokenizer files the GGUF metadata stands for.
  const nlohmann::json tokenizer = out.tokenizer_document();
  EXPECT_EQ(tokenizer["model"]["vocab"].size() + tokenizer["added_tokens"].size(), 128256u);
  EXPECT_EQ(tokenizer["decoder"]["type"], "ByteLevel");
  const nlohmann::json config = out.tokenizer_config_document();
  EXPECT_EQ(config["bos_token"], "<|begin_of_text|>");
  EXPECT_EQ(config["eos_token"], "<|eot_id|>");
  EXPECT_EQ(config["chat_template"], ModelFolder::open(path("model")).tokenizer_config_document()["chat_template"]);
}

TEST_F(GgufSource, AVocabularyErrorNamesTheTokenizerFile) {
  testing::TempDir dir("llama31-gguf-source-bad");
  write_test_model(dir.path());
  std::ofstream(dir.path() / "tokenizer.json") << R"({"model": {"type": "BPE"}})";
  try {
    export_gguf(ModelFolder::open(dir.path()), dir.path() / "out.gguf");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find((dir.path() / "tokenizer.json").string()), std::string::npos) << message;
    EXPECT_NE(message.find("model.vocab"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace llama31
