// llama31 template renders exactly what transformers renders. The expected strings were produced by
// Python's Jinja2 3.1.2 configured as transformers configures it (ImmutableSandboxedEnvironment,
// trim_blocks, lstrip_blocks, its tojson) on the official Llama 3.1 template.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "support/cli_runner.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

namespace fs = std::filesystem;
using testing::run_cli;

const std::string kTokenizerDir = std::string(LLAMA31_SOURCE_DIR) + "/data/llama-3.1-tokenizer";

std::string write_file(const testing::TempDir& dir, const std::string& name, const std::string& text) {
  const auto path = dir.path() / name;
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

const char* kMessages = R"([{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi"}])";

TEST(TemplateCli, RendersTheOfficialLlama31FormatByteForByte) {
  testing::TempDir dir;
  const auto messages = write_file(dir, "messages.json", kMessages);
  const auto r = run_cli({"template", "-m", kTokenizerDir, "--messages", messages, "--date-string", "26 Jul 2024"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
            "Today Date: 26 Jul 2024\n\nYou are helpful.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi"
            "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(TemplateCli, CustomToolsGoIntoTheUserTurnAsIndentedJson) {
  testing::TempDir dir;
  const auto messages = write_file(dir, "messages.json", kMessages);
  const auto tools = write_file(dir, "tools.json", R"([{"type": "function", "function": {"name": "get_weather",
    "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
    "required": ["city"]}}}])");
  const auto r = run_cli({"template", "-m", kTokenizerDir, "--messages", messages, "--tools", tools, "--date-string",
                          "26 Jul 2024"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge "
            "Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are helpful.<|eot_id|><|start_header_id|>user"
            "<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for a function call with "
            "its proper arguments that best answers the given prompt.\n\nRespond in the format {\"name\": function "
            "name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n{\n    \"type\": "
            "\"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n        \"description\": "
            "\"Weather\",\n        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": {\n"
            "                \"city\": {\n                    \"type\": \"string\"\n                }\n            },\n"
            "            \"required\": [\n                \"city\"\n            ]\n        }\n    }\n}\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(TemplateCli, FallsBackToTheOfficialTemplateWhenTheFolderHasNone) {
  testing::TempDir dir;
  fs::create_directories(dir.path() / "model");
  fs::copy_file(fs::path(kTokenizerDir) / "tokenizer.json", dir.path() / "model" / "tokenizer.json");
  const auto messages = write_file(dir, "messages.json", kMessages);
  const auto with = run_cli({"template", "-m", kTokenizerDir, "--messages", messages, "--date-string", "1 Jan 2025"});
  const auto without = run_cli({"template", "-m", (dir.path() / "model").string(), "--messages", messages,
                                "--date-string", "1 Jan 2025"});
  ASSERT_EQ(without.exit_code, 0) << without.err;
  EXPECT_EQ(with.out, without.out);
}

TEST(TemplateCli, BadInputGivesAOneLineError) {
  testing::TempDir dir;
  const auto bad_role = write_file(dir, "bad_role.json", R"([{"role": "wizard", "content": "x"}])");
  auto r = run_cli({"template", "-m", kTokenizerDir, "--messages", bad_role});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("wizard"), std::string::npos) << r.err;

  const auto messages = write_file(dir, "messages.json", kMessages);
  const auto bad_tools = write_file(dir, "tools.json", R"({"name": "not a list"})");
  r = run_cli({"template", "-m", kTokenizerDir, "--messages", messages, "--tools", bad_tools});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("tools"), std::string::npos) << r.err;

  const auto broken = write_file(dir, "broken.json", "[{\"role\": ");
  r = run_cli({"template", "-m", kTokenizerDir, "--messages", broken});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("invalid JSON"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace llama31
