// Rendered Llama 3.1 prompts tokenize as the model expects: every special token of the template is
// exactly its own single id, and the text between them is tokenized as ordinary text.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "chat/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace llama31 {
namespace {

const std::string kSourceDir = LLAMA31_SOURCE_DIR;

const Tokenizer& tokenizer() {
  static const Tokenizer t = Tokenizer::from_files(kSourceDir + "/data/llama-3.1-tokenizer/tokenizer.json",
                                                   kSourceDir + "/data/llama-3.1-tokenizer/tokenizer_config.json");
  return t;
}

const std::vector<std::string> kSpecialTokens = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                                 "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"};

// The expected ids: special tokens as their single id, the text between them encoded without parsing specials.
std::vector<TokenId> expected_ids(const std::string& text) {
  std::vector<TokenId> ids;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t next = std::string::npos;
    std::string found;
    for (const auto& special : kSpecialTokens) {
      const auto p = text.find(special, pos);
      if (p < next) {
        next = p;
        found = special;
      }
    }
    const auto plain = tokenizer().encode(std::string_view(text).substr(pos, next - pos), false);
    ids.insert(ids.end(), plain.begin(), plain.end());
    if (next == std::string::npos) break;
    ids.push_back(*tokenizer().token_to_id(found));
    pos = next + found.size();
  }
  return ids;
}

void check_prompt(const std::string& prompt, const std::string& what) {
  const auto ids = tokenizer().encode(prompt, /*parse_special=*/true);
  EXPECT_EQ(ids, expected_ids(prompt)) << what;
  EXPECT_EQ(tokenizer().decode(ids), prompt) << what;
  for (const auto& special : kSpecialTokens) {
    const auto id = tokenizer().token_to_id(special);
    ASSERT_TRUE(id.has_value()) << special;
    std::size_t in_text = 0;
    for (auto p = prompt.find(special); p != std::string::npos; p = prompt.find(special, p + 1)) ++in_text;
    EXPECT_EQ(static_cast<std::size_t>(std::count(ids.begin(), ids.end(), *id)), in_text) << what << " " << special;
  }
}

TEST(RenderedPromptTokens, ReferenceCasesTokenizeWithSpecialTokensAsSingleIds) {
  std::ifstream in(kSourceDir + "/tests/data/chat/cases.json");
  std::stringstream text;
  text << in.rdbuf();
  const auto cases = nlohmann::json::parse(text.str());
  int checked = 0, with_python_tag = 0;
  for (const auto& c : cases) {
    if (!c.contains("output") || !c["output"].is_string()) continue;
    const std::string output = c["output"].get<std::string>();
    if (output.find("<|start_header_id|>") == std::string::npos) continue;
    const bool tag = output.find("<|python_tag|>") != std::string::npos;
    if (checked >= 8 && !(tag && with_python_tag < 3)) continue;
    check_prompt(output, c.value("name", "?"));
    ++checked;
    if (tag) ++with_python_tag;
  }
  EXPECT_GE(checked, 8);
}

TEST(RenderedPromptTokens, OfficialTemplateWithToolCallsAndResults) {
  const auto messages = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "ipython", "content": "{\"temp\": 21}"},
    {"role": "assistant", "content": "21 degrees."},
    {"role": "user", "content": "Thanks <|eot_id|> literally"}])");
  const auto tools = nlohmann::ordered_json::parse(
      R"([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])");
  nlohmann::ordered_json extra = {{"date_string", "26 Jul 2024"}, {"builtin_tools", {"brave_search"}}};
  const std::string prompt =
      render_chat(official_llama31_template(), messages, tools, true, extra, "<|begin_of_text|>");
  ASSERT_EQ(prompt.rfind("<|begin_of_text|>", 0), 0u);
  check_prompt(prompt, "tools conversation");
  const auto ids = tokenizer().encode(prompt, true);
  EXPECT_EQ(ids.front(), *tokenizer().token_to_id("<|begin_of_text|>"));
}

}  // namespace
}  // namespace llama31
