// The server's TGI routes, error shapes and statuses, API key, body limit, metrics and disconnects.
#include <gtest/gtest.h>

#include "server/server_test_util.h"

namespace llama31::server::testing {
namespace {

using nlohmann::json;

ServerOptions plain_options() {
  ServerOptions o;
  o.max_body_bytes = 64 * 1024;
  return o;
}

// Built after the model it serves, so at exit it stops and joins its threads before the model goes.
TestServer& plain_server() {
  static TestServer server(plain_options());
  return server;
}

TEST(ServerTgi, GenerateStreamInfoHealth) {
  auto c = plain_server().client();
  const json req = {{"inputs", "Once upon a time"},
                    {"parameters", {{"max_new_tokens", 6}, {"details", true}, {"seed", 3}}}};
  auto res = c.Post("/generate", req.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json out = json::parse(res->body);
  const std::string text = out["generated_text"];
  ASSERT_TRUE(out.contains("details"));
  EXPECT_EQ(out["details"]["tokens"].size(), out["details"]["generated_tokens"].get<size_t>());
  const std::string finish = out["details"]["finish_reason"];
  EXPECT_TRUE(finish == "length" || finish == "eos_token") << finish;

  res = c.Post("/generate_stream", req.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  const auto events = sse_payloads(res->body);
  ASSERT_GE(events.size(), 2u);
  std::string streamed;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    EXPECT_TRUE(events[i]["token"]["id"].is_number_integer());
    EXPECT_TRUE(events[i]["generated_text"].is_null());
    if (!events[i]["token"]["special"].get<bool>()) streamed += events[i]["token"]["text"].get<std::string>();
  }
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(events.back()["generated_text"], text);

  res = c.Get("/info");
  ASSERT_TRUE(res);
  const json info = json::parse(res->body);
  EXPECT_EQ(info["model_id"], "tiny-llama");
  EXPECT_EQ(info["max_total_tokens"], 512);
  res = c.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

void expect_error(httplib::Result res, int status, const std::string& mentions) {
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, status) << res->body;
  const json e = json::parse(res->body);
  ASSERT_TRUE(e["error"].is_object()) << res->body;
  EXPECT_TRUE(e["error"]["message"].is_string());
  EXPECT_TRUE(e["error"].contains("type"));
  EXPECT_TRUE(e["error"].contains("param"));
  EXPECT_NE(e["error"]["message"].get<std::string>().find(mentions), std::string::npos) << res->body;
}

TEST(ServerErrors, BadRequestsGet4xxInOpenAIShape) {
  auto c = plain_server().client();
  const json user = {{"role", "user"}, {"content", "hi"}};
  expect_error(c.Post("/v1/chat/completions", "{not json", "application/json"), 400, "JSON");
  expect_error(c.Post("/v1/chat/completions", json{{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}.dump(),
                      "application/json"),
               400, "role");
  expect_error(c.Post("/v1/chat/completions", json{{"messages", {user}}, {"tools", "x"}}.dump(), "application/json"),
               400, "tools");
  expect_error(c.Post("/v1/chat/completions", json{{"messages", {user}}, {"temperature", -1}}.dump(),
                      "application/json"),
               400, "temperature");
  expect_error(c.Post("/v1/chat/completions", json{{"messages", {user}}, {"max_tokens", 100000}}.dump(),
                      "application/json"),
               400, "512");
  expect_error(c.Get("/v1/nothing"), 404, "/v1/nothing");
  expect_error(c.Get("/v1/chat/completions"), 405, "GET");
  expect_error(c.Post("/v1/chat/completions", std::string(100 * 1024, ' '), "application/json"), 413, "large");
}

TEST(ServerAuth, ApiKeyGuardsEverythingButHealth) {
  ServerOptions o;
  o.api_key = "sekret";
  TestServer server(o);
  auto c = server.client();
  expect_error(c.Get("/v1/models"), 401, "API key");
  c.set_bearer_token_auth("wrong");
  expect_error(c.Get("/v1/models"), 401, "API key");
  auto health = server.client().Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto ok = server.client();
  ok.set_bearer_token_auth("sekret");
  auto res = ok.Get("/v1/models");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

double metric(const std::string& text, const std::string& series) {
  const auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

TEST(ServerMetrics, SeriesExistAndMoveAfterARequest) {
  auto c = plain_server().client();
  auto before = c.Get("/metrics");
  ASSERT_TRUE(before);
  for (const char* s : {"llama31_queue_depth", "llama31_running_sequences", "llama31_kv_cache_blocks_total",
                        "llama31_generated_tokens_total", "llama31_prompt_tokens_total",
                        "llama31_prefix_cache_hit_tokens_total", "llama31_time_to_first_token_seconds_count",
                        "llama31_inter_token_latency_seconds_count"})
    EXPECT_GE(metric(before->body, s), 0) << s;
  auto res = c.Post("/v1/completions", json{{"prompt", "abc"}, {"max_tokens", 3}, {"temperature", 0}}.dump(),
                    "application/json");
  ASSERT_TRUE(res);
  auto after = c.Get("/metrics");
  ASSERT_TRUE(after);
  EXPECT_GT(metric(after->body, "llama31_generated_tokens_total"),
            metric(before->body, "llama31_generated_tokens_total"));
  EXPECT_GT(metric(after->body, "llama31_time_to_first_token_seconds_count"),
            metric(before->body, "llama31_time_to_first_token_seconds_count"));
  EXPECT_NE(after->body.find("llama31_requests_total{route=\"/v1/completions\",status=\"200\"}"), std::string::npos);
}

TEST(ServerStreams, ClientDisconnectFreesTheSlot) {
  auto c = plain_server().client();
  const json body = {{"prompt", "tell me a long story"}, {"max_tokens", 400}, {"stream", true}, {"temperature", 0}};
  int chunks = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 2; };  // hang up early
  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  EXPECT_FALSE(c.send(req, response, error));
  // The sequence is cancelled long before its 400 tokens: poll until the batch is empty.
  double running = 1;
  for (int i = 0; i < 600 && running != 0; ++i) {
    auto m = c.Get("/metrics");
    ASSERT_TRUE(m);
    running = metric(m->body, "llama31_running_sequences") + metric(m->body, "llama31_queue_depth");
    if (running != 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(running, 0);
  auto m = c.Get("/metrics");
  EXPECT_LT(metric(m->body, "llama31_generated_tokens_total"), 400);
}

// Back-pressure: with one batch slot and one queue place taken, the next request is refused with 429 at
// once; once the slot frees, requests are served again.
TEST(ServerErrors, AFullQueueAnswers429AndTheServerRecovers) {
  SchedulerOptions sched = TestServer::small_scheduler();
  sched.max_batch = 1;
  sched.max_queue = 1;
  TestServer server(ServerOptions{}, sched);
  const json slow = {{"prompt", "a long story"}, {"max_tokens", 300}, {"temperature", 0}, {"ignore_eos", true}};
  std::vector<std::thread> holders;
  std::atomic<int> served{0};
  for (int i = 0; i < 2; ++i) {
    holders.emplace_back([&] {
      auto c = server.client();
      auto res = c.Post("/v1/completions", slow.dump(), "application/json");
      if (res && res->status == 200) ++served;
    });
    // Wait until this request holds the slot (first) or the queue place (second).
    auto c = server.client();
    for (int tries = 0; tries < 500; ++tries) {
      auto m = c.Get("/metrics");
      ASSERT_TRUE(m);
      if (metric(m->body, "llama31_running_sequences") + metric(m->body, "llama31_queue_depth") >= i + 1) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  auto c = server.client();
  expect_error(c.Post("/v1/completions", json{{"prompt", "hi"}, {"max_tokens", 2}}.dump(), "application/json"), 429,
               "busy");
  for (auto& t : holders) t.join();
  EXPECT_EQ(served.load(), 2) << "the running and the queued request both completed";
  auto res = c.Post("/v1/completions", json{{"prompt", "hi"}, {"max_tokens", 2}}.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
}

}  // namespace
}  // namespace llama31::server::testing
