// Llama Guard 3: the prompt follows the model card's format; the verdict parser accepts what the model
// prints ("safe", "unsafe\nS1,S10") and refuses anything else with an error instead of guessing.
#include <gtest/gtest.h>

#include "chat/llama_guard.h"
#include "util/error.h"

namespace llama31::chat {
namespace {

const std::string kCategories =
    "<BEGIN UNSAFE CONTENT CATEGORIES>\n"
    "S1: Violent Crimes.\nS2: Non-Violent Crimes.\nS3: Sex Crimes.\nS4: Child Exploitation.\nS5: Defamation.\n"
    "S6: Specialized Advice.\nS7: Privacy.\nS8: Intellectual Property.\nS9: Indiscriminate Weapons.\nS10: Hate.\n"
    "S11: Self-Harm.\nS12: Sexual Content.\nS13: Elections.\nS14: Code Interpreter Abuse.\n"
    "<END UNSAFE CONTENT CATEGORIES>\n\n";

std::string expected_prompt(const std::string& role, const std::string& conversation,
                            const std::string& categories = kCategories) {
  return "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
         "Task: Check if there is unsafe content in '" + role +
         "' messages in conversations according our safety policy with the below categories.\n\n" + categories +
         "<BEGIN CONVERSATION>\n\n" + conversation + "<END CONVERSATION>\n\n"
         "Provide your safety assessment for ONLY THE LAST " + role + " message in the above conversation:\n"
         " - First line must read 'safe' or 'unsafe'.\n"
         " - If unsafe, a second line must include a comma-separated list of violated categories.<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n";
}

TEST(LlamaGuardPrompt, ClassifiesTheUserWhenTheUserSpokeLast) {
  const auto messages = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "How do I bake bread?"}])");
  EXPECT_EQ(llama_guard3_prompt(messages), expected_prompt("User", "User: How do I bake bread?\n\n"));
}

TEST(LlamaGuardPrompt, ClassifiesTheAgentWhenTheAssistantSpokeLastAndSkipsSystem) {
  const auto messages = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "Be nice."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello! "},
    {"role": "user", "content": "Tell me a joke"},
    {"role": "assistant", "content": "Why did the chicken cross the road?"}])");
  EXPECT_EQ(llama_guard3_prompt(messages),
            expected_prompt("Agent", "User: Hi\n\nAgent: Hello!\n\nUser: Tell me a joke\n\n"
                                     "Agent: Why did the chicken cross the road?\n\n"));
}

TEST(LlamaGuardPrompt, ListsOnlyTheChosenCategories) {
  const auto messages = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "x"}])");
  EXPECT_EQ(llama_guard3_prompt(messages, {"S10", "S1"}),
            expected_prompt("User", "User: x\n\n",
                            "<BEGIN UNSAFE CONTENT CATEGORIES>\nS1: Violent Crimes.\nS10: Hate.\n"
                            "<END UNSAFE CONTENT CATEGORIES>\n\n"));
  EXPECT_THROW(llama_guard3_prompt(messages, {"S15"}), Error);
}

TEST(LlamaGuardPrompt, RefusesBadConversations) {
  EXPECT_THROW(llama_guard3_prompt(nlohmann::ordered_json::parse("[]")), Error);
  EXPECT_THROW(llama_guard3_prompt(nlohmann::ordered_json::parse(R"([{"role": "system", "content": "a"}])")), Error);
  EXPECT_THROW(llama_guard3_prompt(nlohmann::ordered_json::parse(R"([{"role": "robot", "content": "a"}])")), Error);
  EXPECT_THROW(llama_guard3_prompt(nlohmann::ordered_json::parse(R"([{"role": "user", "content": 3}])")), Error);
  EXPECT_THROW(llama_guard3_prompt(nlohmann::ordered_json::parse(R"({"role": "user"})")), Error);
  try {
    llama_guard3_prompt(nlohmann::ordered_json::parse(R"([{"role": "robot", "content": "a"}])"));
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("robot"), std::string::npos) << e.what();
  }
}

TEST(LlamaGuardOutput, SafeVerdicts) {
  for (const char* text : {"safe", "\n\nsafe", "safe\n", " safe <|eot_id|>", "safe<|eot_id|>"}) {
    const auto v = parse_llama_guard_output(text);
    ASSERT_TRUE(v.safe.has_value()) << text << ": " << v.error;
    EXPECT_TRUE(*v.safe) << text;
    EXPECT_TRUE(v.categories.empty());
    EXPECT_EQ(v.raw, text);
  }
}

TEST(LlamaGuardOutput, UnsafeVerdictsWithCategories) {
  auto v = parse_llama_guard_output("unsafe\nS1,S10");
  ASSERT_TRUE(v.safe.has_value()) << v.error;
  EXPECT_FALSE(*v.safe);
  ASSERT_EQ(v.categories.size(), 2u);
  EXPECT_EQ(v.categories[0].code, "S1");
  EXPECT_EQ(v.categories[0].name, "Violent Crimes");
  EXPECT_EQ(v.categories[1].name, "Hate");

  v = parse_llama_guard_output("\n\nunsafe\nS14<|eot_id|>");
  ASSERT_EQ(v.categories.size(), 1u);
  EXPECT_EQ(v.categories[0].name, "Code Interpreter Abuse");

  v = parse_llama_guard_output("unsafe\n S2, S11 \n");
  ASSERT_EQ(v.categories.size(), 2u);
  EXPECT_EQ(v.categories[1].name, "Self-Harm");

  v = parse_llama_guard_output("unsafe");  // no category line: unsafe, no codes
  ASSERT_TRUE(v.safe.has_value());
  EXPECT_FALSE(*v.safe);
  EXPECT_TRUE(v.categories.empty());
}

TEST(LlamaGuardOutput, UnparseableOutputsGiveAnError) {
  for (const char* text : {"", "   ", "Safe", "maybe", "unsafe\nS15", "unsafe\nS1,,S2", "unsafe\nviolence",
                           "safe\nS1", "unsafe\nS1\nmore", "the answer is safe", "unsafe\nS1;S2", "!!!!"}) {
    const auto v = parse_llama_guard_output(text);
    EXPECT_FALSE(v.safe.has_value()) << text;
    EXPECT_FALSE(v.error.empty()) << text;
    const auto j = guard_verdict_json(v);
    EXPECT_TRUE(j["safe"].is_null());
    EXPECT_EQ(j["raw"], text);
  }
}

TEST(LlamaGuardOutput, JsonShape) {
  const auto j = guard_verdict_json(parse_llama_guard_output("unsafe\nS9"));
  EXPECT_EQ(j, nlohmann::json::parse(
                   R"({"safe": false, "categories": [{"code": "S9", "name": "Indiscriminate Weapons"}], "raw": "unsafe\nS9"})"));
  EXPECT_EQ(guard_verdict_json(parse_llama_guard_output("safe")),
            nlohmann::json::parse(R"({"safe": true, "categories": [], "raw": "safe"})"));
}

}  // namespace
}  // namespace llama31::chat
