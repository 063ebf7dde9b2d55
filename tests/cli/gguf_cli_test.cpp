// Every command that takes -m accepts a GGUF file: a folder converted with `llama31 convert` generates the
// same greedy tokens from the file, info describes it, tokenize reads its vocabulary, and a damaged file is
// a one-line error.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "model_files/test_model.h"
#include "support/cli_runner.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

using testing::run_cli;

class GgufCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("llama31-gguf-cli");
    TestModelSpec spec;
    spec.dtype = DType::F32;
    write_test_model(dir_->path() / "model", spec);
    const auto r = run_cli({"convert", "-m", folder(), "-o", gguf(), "--type", "f32"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string folder() { return (dir_->path() / "model").string(); }
  static std::string gguf() { return (dir_->path() / "model.gguf").string(); }
  static inline testing::TempDir* dir_ = nullptr;
};

TEST_F(GgufCli, GenerateFromTheFileGivesTheFoldersGreedyTokens) {
  const std::vector<std::string> args = {"-p", "Once upon a time", "-n", "10", "--temp", "0", "--ids-json", "-t", "1"};
  auto with_model = [&](const std::string& m) {
    std::vector<std::string> a = {"generate", "-m", m};
    a.insert(a.end(), args.begin(), args.end());
    return run_cli(a);
  };
  const auto from_folder = with_model(folder());
  const auto from_file = with_model(gguf());
  ASSERT_EQ(from_folder.exit_code, 0) << from_folder.err;
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  EXPECT_EQ(from_file.out, from_folder.out);
  EXPECT_NE(from_file.err.find("model.gguf"), std::string::npos) << from_file.err;
}

TEST_F(GgufCli, InfoDescribesTheFile) {
  const auto text = run_cli({"info", "-m", gguf()});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("GGUF tensors:"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("rope_freqs"), std::string::npos) << text.out;
  const auto json = run_cli({"info", "-m", gguf(), "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["num_hidden_layers"], 2);
  EXPECT_EQ(j["gguf_version"], 3);
  EXPECT_EQ(j["gguf_tensor_types"]["f32"], 2 * 9 + 3 + 1);  // layers, embedding, norm, head, rope_freqs
}

TEST_F(GgufCli, TokenizeReadsTheFilesVocabulary) {
  const auto a = run_cli({"tokenize", "-m", folder(), "Grüße, 世界! 12345"});
  const auto b = run_cli({"tokenize", "-m", gguf(), "Grüße, 世界! 12345"});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(b.out, a.out);
  EXPECT_FALSE(b.out.empty());
}

TEST_F(GgufCli, QuantizeWritesLlamaCppTypesAsGgufThatRuns) {
  const auto out = dir_->path() / "model-q4_0.gguf";
  const auto q = run_cli({"quantize", "-m", folder(), "-o", out.string(), "--type", "q4_0"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  const auto info = run_cli({"info", "-m", out.string(), "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  const auto j = nlohmann::json::parse(info.out);
  // Every linear layer and the embedding, as llama-quantize types them; the head takes Q8_0 (rows of 64 are
  // not whole Q6_K blocks).
  EXPECT_EQ(j["gguf_tensor_types"]["q4_0"], 2 * 7 + 1);
  EXPECT_EQ(j["gguf_tensor_types"]["q8_0"], 1);
  EXPECT_GT(j["weight_bytes_by_dtype"]["Q4_0"].get<long long>(), 0);
  const auto g = run_cli({"generate", "-m", out.string(), "-p", "Hello", "-n", "4", "--temp", "0", "--ids-json"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  // A GGUF file is a source for more GGUF as a folder is (gguf_convert_cli_test.cpp has the details).
  const auto again = run_cli({"convert", "-m", out.string(), "-o", (dir_->path() / "again.gguf").string()});
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

TEST_F(GgufCli, ADamagedFileIsAOneLineError) {
  std::ifstream in(gguf(), std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  const auto cut = dir_->path() / "cut.gguf";
  std::ofstream(cut, std::ios::binary) << bytes.str().substr(0, bytes.str().size() / 2);
  const auto r = run_cli({"generate", "-m", cut.string(), "-p", "Hi", "-n", "2"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << r.err;
  EXPECT_NE(r.err.find("cut.gguf"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("beyond the end of the file"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace llama31
