// llama31 tokenize / detokenize as a user runs them, on the real Llama 3.1 tokenizer files.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

#include "support/cli_runner.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

using testing::run_cli;

std::string tokenizer_dir() { return std::string(LLAMA31_SOURCE_DIR) + "/data/llama-3.1-tokenizer"; }

std::vector<int> printed_ids(const testing::CliResult& result) {
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(std::count(result.out.begin(), result.out.end(), '\n'), 1) << "one line: " << result.out;
  return nlohmann::json::parse(result.out).get<std::vector<int>>();
}

TEST(TokenizeCli, PrintsIdsAsOneJsonLine) {
  // "Hello world" is [9906, 1917] in llama.cpp's Hugging Face vectors.
  EXPECT_EQ(printed_ids(run_cli({"tokenize", "-m", tokenizer_dir(), "Hello world"})), (std::vector<int>{9906, 1917}));
  EXPECT_EQ(printed_ids(run_cli({"tokenize", "-m", tokenizer_dir(), "--bos", "Hello world"})),
            (std::vector<int>{128000, 9906, 1917}));
}

TEST(TokenizeCli, ParsesSpecialTokensOnlyWithTheFlag) {
  const auto with = printed_ids(run_cli({"tokenize", "-m", tokenizer_dir(), "--special", "<|eot_id|>"}));
  EXPECT_EQ(with, (std::vector<int>{128009}));
  const auto without = printed_ids(run_cli({"tokenize", "-m", tokenizer_dir(), "<|eot_id|>"}));
  EXPECT_GT(without.size(), 1u);
  EXPECT_EQ(std::find(without.begin(), without.end(), 128009), without.end());
}

TEST(TokenizeCli, DetokenizeReversesTokenize) {
  const std::string text = "Grüße, 世界! 👩🏽‍💻 <|eot_id|>";
  const auto ids = printed_ids(run_cli({"tokenize", "-m", tokenizer_dir(), "--special", text}));
  const std::string json_ids = nlohmann::json(ids).dump();
  const auto from_json = run_cli({"detokenize", "-m", tokenizer_dir(), json_ids});
  EXPECT_EQ(from_json.exit_code, 0) << from_json.err;
  EXPECT_EQ(from_json.out, text + "\n");
  std::string comma_ids;
  for (const int id : ids) comma_ids += (comma_ids.empty() ? "" : ",") + std::to_string(id);
  const auto from_commas = run_cli({"detokenize", "-m", tokenizer_dir(), "--skip-special", comma_ids});
  EXPECT_EQ(from_commas.exit_code, 0) << from_commas.err;
  EXPECT_EQ(from_commas.out, "Grüße, 世界! 👩🏽‍💻 \n");
}

TEST(TokenizeCli, BadInputGivesOneLineErrors) {
  const auto bad_id = run_cli({"detokenize", "-m", tokenizer_dir(), "9906,999999"});
  EXPECT_EQ(bad_id.exit_code, 1);
  EXPECT_NE(bad_id.err.find("token id 999999 is outside the vocabulary of 128256"), std::string::npos) << bad_id.err;

  const auto bad_utf8 = run_cli({"tokenize", "-m", tokenizer_dir(), "abc\xff"});
  EXPECT_EQ(bad_utf8.exit_code, 1);
  EXPECT_NE(bad_utf8.err.find("invalid UTF-8 at byte 3"), std::string::npos) << bad_utf8.err;

  testing::TempDir empty;
  const auto no_tokenizer = run_cli({"tokenize", "-m", empty.path().string(), "hi"});
  EXPECT_EQ(no_tokenizer.exit_code, 1);
  EXPECT_NE(no_tokenizer.err.find("has no tokenizer.json"), std::string::npos) << no_tokenizer.err;

  const auto not_ids = run_cli({"detokenize", "-m", tokenizer_dir(), "1,two,3"});
  EXPECT_EQ(not_ids.exit_code, 1);
  EXPECT_NE(not_ids.err.find("two"), std::string::npos) << not_ids.err;
}

}  // namespace
}  // namespace llama31
