// `llama31 memory` as a user runs it.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "model_files/test_model.h"
#include "support/cli_runner.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

using testing::run_cli;

nlohmann::json memory_json(const std::vector<std::string>& args) {
  std::vector<std::string> all{"memory", "--json"};
  all.insert(all.end(), args.begin(), args.end());
  const auto result = run_cli(all);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return nlohmann::json::parse(result.out);
}

TEST(MemoryCli, TextReportShowsTheReleaseTablesBesideOurs) {
  const auto result = run_cli({"memory", "--model", "70b"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(result.err.empty()) << result.err;
  for (const char* needle : {"Llama 3.1 70B", "70,553,706,496", "GiB = 2^30 bytes", "Weights",
                             "KV cache", "Training estimates", "vs release"}) {
    EXPECT_NE(result.out.find(needle), std::string::npos) << needle << "\n" << result.out;
  }
}

TEST(MemoryCli, JsonReproducesTheReleasesKvColumns) {
  // The release's FP16 KV cache for 8B and 70B at 1,024 / 16,000 / 128,000 tokens (in GiB).
  const std::vector<std::pair<std::string, std::vector<double>>> published{
      {"8b", {0.125, 1.95, 15.62}}, {"70b", {0.313, 4.88, 39.06}}};
  for (const auto& [model, figures] : published) {
    const auto j = memory_json({"--model", model});
    ASSERT_EQ(j.at("kv_cache").size(), figures.size());
    for (size_t i = 0; i < figures.size(); ++i) {
      const double ours = j.at("kv_cache")[i].at("gib_16bit").get<double>();
      const double half_unit = figures[i] < 1.0 ? 0.0005 : 0.005;
      EXPECT_LE(std::abs(ours - figures[i]), half_unit + 1e-9) << model << " column " << i;
    }
  }
}

TEST(MemoryCli, FourOhFiveNotesTheReleasesDoubledKvFigures) {
  const auto result = run_cli({"memory", "--model", "405b"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("twice"), std::string::npos) << result.out;
  const auto j = memory_json({"--model", "405b", "--context", "128000"});
  // 126 layers x 8 KV heads x 128 dims x K and V x 2 bytes x 128,000 tokens.
  EXPECT_DOUBLE_EQ(j.at("kv_cache")[0].at("bytes_16bit").get<double>(),
                   126.0 * 8 * 128 * 2 * 2 * 128000);
}

TEST(MemoryCli, ModelFolderIsReadFromItsConfig) {
  testing::TempDir dir;
  TestModelSpec spec;
  write_test_model(dir.path(), spec);
  const auto j = memory_json({"--model", dir.path().string(), "--context", "256", "--batch", "3"});
  EXPECT_EQ(j.at("model").at("hidden_size").get<int>(), spec.hidden_size);
  EXPECT_EQ(j.at("model").at("published").get<bool>(), false);
  EXPECT_GT(j.at("model").at("stored_weight_bytes").get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(j.at("kv_cache")[0].at("bytes_16bit").get<double>(),
                   2.0 * spec.num_hidden_layers * spec.num_key_value_heads * spec.head_dim * 2 *
                       256 * 3);
}

TEST(MemoryCli, BadArgumentsFailWithAClearMessage) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
      {{"--model", "3b"}, "'3b'"},
      {{"--context", "-1"}, "--context"},
      {{"--dtype", "q9"}, "'q9'"},
      {{"--batch", "0"}, "--batch"}};
  for (const auto& [args, needle] : cases) {
    std::vector<std::string> all{"memory"};
    all.insert(all.end(), args.begin(), args.end());
    const auto result = run_cli(all);
    EXPECT_EQ(result.exit_code, 1) << args[1];
    EXPECT_TRUE(result.out.empty()) << result.out;
    EXPECT_NE(result.err.find("llama31: error:"), std::string::npos) << result.err;
    EXPECT_NE(result.err.find(needle), std::string::npos) << result.err;
  }
}

}  // namespace
}  // namespace llama31
