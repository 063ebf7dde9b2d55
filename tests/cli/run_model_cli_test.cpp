// generate, score and bench as a user runs them, and the one-line errors bad input must give.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "model_files/test_model.h"
#include "support/cli_runner.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

using testing::run_cli;

class RunModelCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("llama31-cli");
    write_test_model(dir_->path() / "model");
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string model() { return (dir_->path() / "model").string(); }
  // A copy of the model folder to break on purpose.
  static std::filesystem::path broken_copy(const std::string& name) {
    const auto dst = dir_->path() / name;
    std::filesystem::copy(dir_->path() / "model", dst, std::filesystem::copy_options::recursive);
    return dst;
  }
  static void expect_one_line_error(const testing::CliResult& r, const std::string& needle) {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_LT(r.exit_code, 128) << "crashed: " << r.err;
    EXPECT_NE(r.err.find("error"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
    EXPECT_EQ(r.err.find("terminate"), std::string::npos) << r.err;
  }
  static inline testing::TempDir* dir_ = nullptr;
};

TEST_F(RunModelCli, GenerateGreedyIsRepeatableAndPrintsIds) {
  const auto a = run_cli({"generate", "-m", model(), "-p", "Hello", "-n", "8", "--temp", "0", "--ids-json"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const auto b = run_cli({"generate", "-m", model(), "-p", "Hello", "-n", "8", "--temp", "0", "--ids-json"});
  EXPECT_EQ(a.out, b.out);
  const auto last_line = a.out.substr(a.out.rfind('\n', a.out.size() - 2) + 1);
  const auto ids = nlohmann::json::parse(last_line);
  ASSERT_TRUE(ids.is_array());
  EXPECT_GE(ids.size(), 1u);
  EXPECT_LE(ids.size(), 8u);
  EXPECT_NE(a.err.find("generated"), std::string::npos) << a.err;
}

TEST_F(RunModelCli, GenerateSeedMakesSamplingRepeatable) {
  auto run = [&](const char* seed) {
    return run_cli({"generate", "-m", model(), "-p", "Once upon", "-n", "12", "--temp", "1.2", "--seed", seed, "--ids-json"}).out;
  };
  EXPECT_EQ(run("5"), run("5"));
  EXPECT_NE(run("5"), run("6"));
}

TEST_F(RunModelCli, ScoreJsonHasOneEntryPerPosition) {
  const auto r = run_cli({"score", "-m", model(), "--text", "The cat sat", "--top", "3", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto& tokens = j["tokens"];
  const auto& positions = j["positions"];
  ASSERT_EQ(tokens[0], 128000) << "score --text puts BOS first";
  ASSERT_EQ(positions.size(), tokens.size());
  for (size_t i = 0; i < positions.size(); ++i) {
    const auto& p = positions[i];
    ASSERT_EQ(p["top"].size(), 3u);
    EXPECT_GE(p["top"][0]["logprob"].get<double>(), p["top"][1]["logprob"].get<double>());
    if (i + 1 < positions.size()) {
      EXPECT_EQ(p["token"], tokens[i + 1]);
      EXPECT_LE(p["logprob"].get<double>(), p["top"][0]["logprob"].get<double>() + 1e-12);
    } else {
      EXPECT_FALSE(p.contains("token"));
    }
  }
}

TEST_F(RunModelCli, ScoreIdsAreTakenAsGiven) {
  const auto r = run_cli({"score", "-m", model(), "--ids", "9906,1917,0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tokens"], nlohmann::json({9906, 1917, 0}));
  EXPECT_EQ(j["positions"][0]["top"].size(), 5u);
}

TEST_F(RunModelCli, BenchJsonLastLine) {
  const auto r = run_cli({"bench", "-m", model(), "-p", "16", "-n", "4", "-r", "1", "-t", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto last_line = r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1);
  const auto j = nlohmann::json::parse(last_line);
  EXPECT_GT(j["prefill_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j["decode_tokens_per_s"].get<double>(), 0);
  EXPECT_EQ(j["threads"], 1);
  EXPECT_NE(r.out.find("| pp16 |"), std::string::npos) << r.out;
  // The bandwidth decode is compared with, measured in the same run, and decode's share of it.
  EXPECT_GT(j["read_gb_per_s"].get<double>(), 0);
  EXPECT_GT(j["decode_fraction_of_bandwidth"].get<double>(), 0);
  EXPECT_NEAR(j["decode_fraction_of_bandwidth"].get<double>(),
              j["decode_tokens_per_s"].get<double>() *
                  (j["bytes_read_per_token"].get<double>() + j["kv_bytes_read_per_token"].get<double>()) /
                  (j["read_gb_per_s"].get<double>() * 1e9),
              0.5 * j["decode_fraction_of_bandwidth"].get<double>());  // a mean of ratios, not the ratio of means
  EXPECT_NE(r.out.find("read bandwidth: "), std::string::npos) << r.out;
}

TEST_F(RunModelCli, BenchAtADepthStartsEachTestFromAFilledContext) {
  const auto r = run_cli({"bench", "-m", model(), "-p", "8", "-n", "4", "-d", "40", "-r", "1", "-t", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| pp8 @ d40 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| tg4 @ d40 |"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1));
  EXPECT_EQ(j["depth_tokens"], 40);
  EXPECT_GE(j["context"].get<int>(), 40 + 8 + 1);
  // Each decode step reads the cache of every earlier position: 40 + (4 + 1) / 2 on average, each holding
  // fp32 keys and values of 2 layers x 2 kv heads x 8 dimensions.
  EXPECT_DOUBLE_EQ(j["kv_bytes_read_per_token"].get<double>(), (40 + 2.5) * 2 * 2 * 2 * 8 * 4);
  EXPECT_GT(j["decode_tokens_per_s"].get<double>(), 0);
}

// Out-of-range numbers are named with their bound, not CLI11's "not in range 0.000000 to 1797693...".
TEST_F(RunModelCli, OutOfRangeNumbersGiveAReadableBound) {
  const auto expect_refused = [](const testing::CliResult& r, const std::string& message) {
    EXPECT_NE(r.exit_code, 0) << r.err;
    EXPECT_LT(r.exit_code, 128) << "crashed: " << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("179769"), std::string::npos) << r.err;
    EXPECT_LT(r.err.size(), 200u) << r.err;
  };
  expect_refused(run_cli({"bench", "-m", model(), "-d", "-5"}), "--n-depth: -5 is less than 0");
  expect_refused(run_cli({"bench", "-m", model(), "-r", "0"}), "--repetitions: 0 is less than 1");
  expect_refused(run_cli({"generate", "-m", model(), "-p", "x", "-n", "many"}), "\"many\" is not a whole number");
  expect_refused(run_cli({"generate", "-m", model(), "-p", "x", "-t", "2.5"}), "\"2.5\" is not a whole number");
  expect_refused(run_cli({"serve", "-m", model(), "--kv-memory", "0"}), "--kv-memory: 0 is not more than 0");
  const auto help = run_cli({"bench", "--help"});
  EXPECT_NE(help.out.find("-d,--n-depth INT:>=0"), std::string::npos) << help.out;
}

TEST_F(RunModelCli, MissingFolderIsNamed) {
  expect_one_line_error(run_cli({"generate", "-m", "/nonexistent/model", "-p", "x"}), "/nonexistent/model");
}

TEST_F(RunModelCli, InvalidUtf8PromptIsRefused) {
  expect_one_line_error(run_cli({"generate", "-m", model(), "-p", "ab\xff\xfe"}), "UTF-8");
}

TEST_F(RunModelCli, PromptLongerThanTheContextIsRefused) {
  expect_one_line_error(run_cli({"generate", "-m", model(), "-p", "one two three four five six", "-c", "4"}),
                        "context");
}

TEST_F(RunModelCli, ContextBeyondTheModelLimitIsRefused) {
  expect_one_line_error(run_cli({"generate", "-m", model(), "-p", "x", "-c", "999999"}), "999999");
}

TEST_F(RunModelCli, TokenIdOutsideTheVocabularyIsRefused) {
  expect_one_line_error(run_cli({"score", "-m", model(), "--ids", "1,200000"}), "200000");
  expect_one_line_error(run_cli({"score", "-m", model(), "--ids", "1,abc"}), "abc");
}

TEST_F(RunModelCli, TruncatedWeightsAreNamed) {
  const auto dir = broken_copy("truncated");
  const auto file = dir / "model.safetensors";
  std::filesystem::resize_file(file, std::filesystem::file_size(file) / 2);
  expect_one_line_error(run_cli({"generate", "-m", dir.string(), "-p", "x"}), "model.safetensors");
}

TEST_F(RunModelCli, UnsupportedArchitectureIsNamed) {
  const auto dir = broken_copy("arch");
  std::ifstream in(dir / "config.json");
  auto config = nlohmann::json::parse(in);
  in.close();
  config["architectures"] = {"MistralForCausalLM"};
  std::ofstream(dir / "config.json") << config.dump();
  expect_one_line_error(run_cli({"score", "-m", dir.string(), "--ids", "1,2"}), "MistralForCausalLM");
}

TEST_F(RunModelCli, MissingTensorIsNamed) {
  const auto dir = broken_copy("missing-tensor");
  // Rewrite the weights without one layer's o_proj.
  std::ifstream in(dir / "model.safetensors", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  in.close();
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  auto header = nlohmann::json::parse(bytes.substr(8, header_len));
  header.erase("model.layers.1.self_attn.o_proj.weight");
  std::string new_header = header.dump();
  new_header.append((8 - new_header.size() % 8) % 8, ' ');
  const uint64_t new_len = new_header.size();
  std::ofstream out(dir / "model.safetensors", std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(&new_len), 8);
  out << new_header << bytes.substr(8 + header_len);
  out.close();
  expect_one_line_error(run_cli({"score", "-m", dir.string(), "--ids", "1,2"}), "model.layers.1.self_attn.o_proj.weight");
}

TEST_F(RunModelCli, HelpListsTheSubcommands) {
  const auto r = run_cli({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* cmd : {"generate", "score", "bench", "info", "tokenize", "detokenize", "memory"}) {
    EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd;
  }
}

}  // namespace
}  // namespace llama31
