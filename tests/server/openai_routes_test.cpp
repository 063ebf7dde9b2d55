// The server's OpenAI routes over a tiny model: chat whole and streamed, usage, n, stop, logprobs,
// completions, models, tool calls.
#include <gtest/gtest.h>

#include "server/server_test_util.h"

namespace llama31::server::testing {
namespace {

using nlohmann::json;

// A function-local static: it is built after the model it serves, so at exit it stops (joining its
// threads) before that model is destroyed.
TestServer& shared_server() {
  static TestServer server;
  return server;
}

json post_json(const std::string& path, const json& body, int expected_status = 200) {
  auto c = shared_server().client();
  auto res = c.Post(path.c_str(), body.dump(), "application/json");
  EXPECT_TRUE(res) << path;
  if (!res) return {};
  EXPECT_EQ(res->status, expected_status) << res->body;
  return json::parse(res->body);
}

json chat_body(int max_tokens) {
  return {{"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hello!"}}}},
          {"max_tokens", max_tokens},
          {"temperature", 0}};
}

TEST(ServerChat, StreamedDeltasEqualTheWholeAnswerAndUsageAddsUp) {
  const json whole = post_json("/v1/chat/completions", chat_body(12));
  ASSERT_EQ(whole["object"], "chat.completion");
  ASSERT_EQ(whole["choices"].size(), 1u);
  const std::string text = whole["choices"][0]["message"]["content"];
  const auto& usage = whole["usage"];
  EXPECT_GT(usage["prompt_tokens"].get<int>(), 5);
  EXPECT_GE(usage["completion_tokens"].get<int>(), 1);
  EXPECT_LE(usage["completion_tokens"].get<int>(), 12);
  EXPECT_EQ(usage["total_tokens"], usage["prompt_tokens"].get<int>() + usage["completion_tokens"].get<int>());
  const std::string finish = whole["choices"][0]["finish_reason"];
  EXPECT_TRUE(finish == "stop" || finish == "length") << finish;

  json body = chat_body(12);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto c = shared_server().client();
  auto res = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  bool done = false;
  const auto events = sse_payloads(res->body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string streamed;
  std::string stream_finish;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const auto& ch = events[i]["choices"][0];
    if (ch["delta"].contains("content")) streamed += ch["delta"]["content"].get<std::string>();
    if (!ch["finish_reason"].is_null()) stream_finish = ch["finish_reason"];
  }
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(stream_finish, finish);
  const auto& last = events.back();
  EXPECT_TRUE(last["choices"].empty());
  for (const char* field : {"prompt_tokens", "completion_tokens", "total_tokens"}) {
    EXPECT_EQ(last["usage"][field], usage[field]) << field;
  }
  // The same prompt again: its whole blocks come from the prefix cache, and the answer is the same.
  const int cached = last["usage"]["prompt_tokens_details"]["cached_tokens"];
  EXPECT_GT(cached, 0);
  EXPECT_EQ(cached % 16, 0) << "whole KV blocks";
  EXPECT_LE(cached, usage["prompt_tokens"].get<int>() - 2);
}

TEST(ServerChat, NChoicesLogprobsAndLengthFinish) {
  json body = chat_body(4);
  body["n"] = 2;
  body["temperature"] = 0.8;
  body["seed"] = 7;
  body["logprobs"] = true;
  body["top_logprobs"] = 2;
  body["stop"] = json::array();
  const json out = post_json("/v1/chat/completions", body);
  ASSERT_EQ(out["choices"].size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const auto& ch = out["choices"][static_cast<size_t>(i)];
    EXPECT_EQ(ch["index"], i);
    const auto& content = ch["logprobs"]["content"];
    ASSERT_FALSE(content.empty());
    for (const auto& e : content) {
      EXPECT_TRUE(e["token"].is_string());
      EXPECT_LE(e["logprob"].get<double>(), 0.0);
      EXPECT_EQ(e["top_logprobs"].size(), 2u);
    }
  }
}

TEST(ServerChat, StopStringEndsTheAnswerBeforeIt) {
  const json whole = post_json("/v1/chat/completions", chat_body(16));
  const std::string text = whole["choices"][0]["message"]["content"];
  if (text.size() < 6) GTEST_SKIP() << "answer too short to cut: " << text;
  const std::string stop = text.substr(text.size() / 2, 3);
  json body = chat_body(16);
  body["stop"] = stop;
  const json cut = post_json("/v1/chat/completions", body);
  EXPECT_EQ(cut["choices"][0]["message"]["content"], text.substr(0, text.find(stop)));
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
}

TEST(ServerCompletions, TokenIdPromptAndTextPromptAgree) {
  const json by_text = post_json("/v1/completions", {{"prompt", "The sky is"}, {"max_tokens", 5}, {"temperature", 0}});
  ASSERT_EQ(by_text["object"], "text_completion");
  const int n = by_text["usage"]["prompt_tokens"];
  const auto ids = tiny_model().tokenizer().encode("The sky is");
  std::vector<int> prompt = {tiny_model().bos_id()};
  prompt.insert(prompt.end(), ids.begin(), ids.end());
  EXPECT_EQ(n, static_cast<int>(prompt.size()));
  const json by_ids =
      post_json("/v1/completions", {{"prompt", prompt}, {"max_tokens", 5}, {"temperature", 0}, {"logprobs", 1}});
  EXPECT_EQ(by_ids["choices"][0]["text"], by_text["choices"][0]["text"]);
  const auto& lp = by_ids["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"].size(), lp["token_logprobs"].size());
  EXPECT_FALSE(lp["tokens"].empty());
}

TEST(ServerModels, ListsTheServedModel) {
  auto c = shared_server().client();
  auto res = c.Get("/v1/models");
  ASSERT_TRUE(res);
  const json out = json::parse(res->body);
  ASSERT_EQ(out["data"].size(), 1u);
  EXPECT_EQ(out["data"][0]["id"], "tiny-llama");
  const json bad = post_json("/v1/chat/completions", {{"model", "gpt-9"}, {"messages", chat_body(1)["messages"]}}, 404);
  EXPECT_NE(bad["error"]["message"].get<std::string>().find("gpt-9"), std::string::npos);
}

TEST(ServerTools, RequiredToolChoiceAlwaysGivesAWellFormedCall) {
  const json tools = json::parse(R"([{"type":"function","function":{"name":"get_weather","description":"Weather",
    "parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},
    "required":["city","days"]}}}])");
  for (const json& choice : {json("required"), json::parse(R"({"type":"function","function":{"name":"get_weather"}})")}) {
    json body = chat_body(60);
    body["tools"] = tools;
    body["tool_choice"] = choice;
    const json out = post_json("/v1/chat/completions", body);
    const auto& ch = out["choices"][0];
    ASSERT_EQ(ch["finish_reason"], "tool_calls") << out.dump();
    const auto& call = ch["message"]["tool_calls"][0];
    EXPECT_EQ(call["type"], "function");
    EXPECT_EQ(call["function"]["name"], "get_weather");
    const json args = json::parse(call["function"]["arguments"].get<std::string>());
    EXPECT_TRUE(args["city"].is_string());
    EXPECT_TRUE(args["days"].is_number_integer());
  }
}

TEST(ServerTools, ResponseFormatJsonObjectYieldsJson) {
  json body = chat_body(40);
  body["response_format"] = {{"type", "json_object"}};
  const json out = post_json("/v1/chat/completions", body);
  const std::string text = out["choices"][0]["message"]["content"];
  EXPECT_TRUE(json::parse(text).is_object()) << text;
}

}  // namespace
}  // namespace llama31::server::testing
