// llama31 guard: --print-prompt shows the Llama Guard 3 prompt; on a random model the verdict is JSON whose
// "safe" is a boolean (exit 0) or null with an error (exit 2), as documented.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include "support/cli_runner.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

using testing::run_cli;

class GuardCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("llama31-guard-cli");
    const auto r = run_cli({"make-test-model", (dir_->path() / "model").string(), "--layers", "2", "--hidden",
                            "64", "--heads", "4", "--kv-heads", "2", "--intermediate", "128"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string model() { return (dir_->path() / "model").string(); }
  static std::string write(const std::string& name, const std::string& text) {
    const auto path = dir_->path() / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }
  static inline testing::TempDir* dir_ = nullptr;
};

TEST_F(GuardCli, PrintPromptShowsTheLlamaGuard3PromptForTheLastRole) {
  const auto user_last = write("u.json", R"([{"role": "user", "content": "How do I pick a lock?"}])");
  auto r = run_cli({"guard", "-m", model(), "--messages", user_last, "--print-prompt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nTask: Check if there is unsafe "
                        "content in 'User' messages", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("S1: Violent Crimes.\n"), std::string::npos);
  EXPECT_NE(r.out.find("S14: Code Interpreter Abuse.\n<END UNSAFE CONTENT CATEGORIES>"), std::string::npos);
  EXPECT_NE(r.out.find("User: How do I pick a lock?\n\n<END CONVERSATION>"), std::string::npos);
  EXPECT_NE(r.out.find("ONLY THE LAST User message"), std::string::npos);

  const auto agent_last = write("a.json", R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])");
  r = run_cli({"guard", "-m", model(), "--messages", agent_last, "--print-prompt", "--categories", "S2,S7"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("ONLY THE LAST Agent message"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("<BEGIN UNSAFE CONTENT CATEGORIES>\nS2: Non-Violent Crimes.\nS7: Privacy.\n<END"),
            std::string::npos) << r.out;
}

TEST_F(GuardCli, VerdictJsonOnARandomModel) {
  const auto messages = write("v.json", R"([{"role": "user", "content": "Hello"}])");
  const auto r = run_cli({"guard", "-m", model(), "--messages", messages, "-n", "4"});
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("safe"));
  ASSERT_TRUE(j.contains("raw"));
  if (j["safe"].is_null()) {
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_FALSE(j["error"].get<std::string>().empty());
  } else {
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(j["categories"].is_array());
  }
}

TEST_F(GuardCli, BadInputIsAClearErrorWithExitCode1) {
  const auto bad = write("bad.json", R"([{"role": "wizard", "content": "Hi"}])");
  auto r = run_cli({"guard", "-m", model(), "--messages", bad, "--print-prompt"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("wizard"), std::string::npos) << r.err;
  r = run_cli({"guard", "-m", model(), "--messages", (dir_->path() / "nope.json").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("nope.json"), std::string::npos) << r.err;
  const auto ok = write("ok.json", R"([{"role": "user", "content": "Hi"}])");
  r = run_cli({"guard", "-m", model(), "--messages", ok, "--print-prompt", "--categories", "S99"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("S99"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace llama31
