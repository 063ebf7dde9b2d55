// llama31 chat on a tiny random model with piped stdin: turns, /reset, /system, the --messages one-shot
// JSON, bad input; tool-call display is tested on the display seam (a random model never calls tools).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include <cstdlib>
#include <algorithm>
#include <fstream>
#include <sstream>

#include "chat/conversation_stream.h"
#include "model_files/test_model.h"
#include "support/cli_runner.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

using testing::CliResult;
using testing::run_cli;

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class ChatCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("llama31-chat-cli");
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
  // Runs the binary with `input` on stdin (run_cli gives /dev/null).
  static CliResult run_with_stdin(const std::vector<std::string>& args, const std::string& input) {
    const auto in = write("stdin.txt", input);
    const auto out = dir_->path() / "stdout.txt", err = dir_->path() / "stderr.txt";
    std::string command = "'" + std::string(LLAMA31_BINARY) + "'";
    for (const auto& a : args) command += " '" + a + "'";
    command += " < '" + in + "' > '" + out.string() + "' 2> '" + err.string() + "'";
    const int status = std::system(command.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_all(out), read_all(err)};
  }
  static inline testing::TempDir* dir_ = nullptr;
};

TEST_F(ChatCli, TwoTurnsResetAndSystemWithPipedInput) {
  const auto r = run_with_stdin({"chat", "-m", model(), "-n", "4", "--temp", "0", "--system", "Be brief."},
                                "Hello\nHow are you?\n/reset\n/system You are a pirate.\nAhoy\n/help\n/bogus\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("history cleared"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("system prompt set"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("/reset"), std::string::npos) << "help text: " << r.err;
  EXPECT_NE(r.err.find("unknown command /bogus"), std::string::npos) << r.err;
  // Three answers, one line each at least; banners and prompts never reach stdout.
  EXPECT_GE(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;
  EXPECT_EQ(r.out.find("history cleared"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("/help for commands"), std::string::npos) << r.out;
}

TEST_F(ChatCli, GreedyAnswersAreReproducibleAndEofQuits) {
  const std::vector<std::string> args = {"chat", "-m", model(), "-n", "5", "--temp", "0"};
  const auto a = run_with_stdin(args, "Hi");  // no final newline: the line still counts
  const auto b = run_with_stdin(args, "Hi\n/exit\nnever read\n");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_FALSE(a.out.empty());
}

TEST_F(ChatCli, OneShotMessagesPrintsAnOpenAiAssistantMessage) {
  const auto messages = write("m.json", R"([{"role": "user", "content": "Hi"}])");
  const auto r = run_cli({"chat", "-m", model(), "--messages", messages, "-n", "4", "--temp", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["message"]["role"], "assistant");
  EXPECT_TRUE(j["message"].contains("content"));
  const std::string finish = j["finish_reason"];
  EXPECT_TRUE(finish == "stop" || finish == "length" || finish == "tool_calls") << finish;
}

TEST_F(ChatCli, BadInputIsAClearErrorWithExitCode1) {
  const auto bad_role = write("bad.json", R"([{"role": "wizard", "content": "Hi"}])");
  auto r = run_cli({"chat", "-m", model(), "--messages", bad_role, "-n", "2"});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.err.find("wizard"), std::string::npos) << r.err;

  r = run_cli({"chat", "-m", model(), "--messages", (dir_->path() / "missing.json").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing.json"), std::string::npos) << r.err;

  r = run_cli({"chat", "-m", model(), "--builtin-tools", "teleport"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("teleport"), std::string::npos) << r.err;
}

// The display seam: pieces as the model would stream them.
chat::AssistantDisplayEnd display(const std::vector<std::string>& pieces, bool eom, std::string& streamed) {
  chat::ToolCallParseOptions options;
  options.deterministic_ids = true;
  chat::AssistantDisplay d(options);
  for (const auto& p : pieces) streamed += d.feed(p);
  return d.finish(eom);
}

TEST(ChatDisplay, PlainTextStreamsAtOnce) {
  std::string streamed;
  const auto end = display({"Hello", " there", "!"}, false, streamed);
  EXPECT_EQ(streamed + end.text, "Hello there!");
  EXPECT_TRUE(end.call_lines.empty());
}

TEST(ChatDisplay, CustomToolCallIsHeldAndShownAsOneJsonLine) {
  std::string streamed;
  const auto end = display({"{\"name\": \"get_", "weather\", \"parameters\": {\"city\": \"Paris\"}}"}, false, streamed);
  EXPECT_EQ(streamed, "");
  EXPECT_EQ(end.text, "");
  ASSERT_EQ(end.call_lines.size(), 1u);
  const auto j = nlohmann::json::parse(end.call_lines[0]);
  EXPECT_EQ(j["tool_call"]["name"], "get_weather");
  EXPECT_EQ(j["tool_call"]["arguments"], nlohmann::json({{"city", "Paris"}}));
  EXPECT_FALSE(j["tool_call"]["id"].get<std::string>().empty());
}

TEST(ChatDisplay, BuiltinCallAfterPythonTagEndedByEom) {
  std::string streamed;
  const auto end = display({"<|python_tag|>", "brave_search.call(query=\"llamas\")"}, true, streamed);
  ASSERT_EQ(end.call_lines.size(), 1u) << streamed << end.text;
  const auto j = nlohmann::json::parse(end.call_lines[0]);
  EXPECT_EQ(j["tool_call"]["name"], "brave_search");
  EXPECT_EQ(j["tool_call"]["arguments"]["query"], "llamas");
  EXPECT_TRUE(end.message.ends_with_eom);
}

TEST(ChatDisplay, ToolResultLinesBecomeJsonWhenTheyParse) {
  EXPECT_EQ(chat::tool_result_from_line("{\"temp\": 21}"), nlohmann::json({{"temp", 21}}));
  EXPECT_EQ(chat::tool_result_from_line("sunny, 21 C"), "sunny, 21 C");
  EXPECT_EQ(chat::tool_result_from_line(""), "");
}

}  // namespace
}  // namespace llama31
