// What every route handler of the server shares: the model, the scheduler, constraint factory, metrics,
// options, and the helpers that turn bad input into OpenAI-shaped HTTP errors.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/generator.h"
#include "engine/scheduler.h"
#include "engine/token_constraint.h"
#include "server/metrics.h"
#include "server/server.h"

namespace llama31::server {

using ojson = nlohmann::ordered_json;

// A request that cannot be served: the status, OpenAI's error type and the offending field.
struct HttpError : std::runtime_error {
  HttpError(int s, const std::string& message, std::string p = {}, std::string t = "invalid_request_error")
      : std::runtime_error(message), status(s), param(std::move(p)), type(std::move(t)) {}
  int status;
  std::string param;
  std::string type;
};

// {"error":{"message","type","param","code"}}
std::string error_body(int status, const std::string& message, const std::string& param = {},
                       const std::string& type = {});

struct ServerContext {
  const LoadedModel& model;
  ServerOptions options;
  Scheduler& scheduler;
  const JsonConstraintFactory& constraints;
  Metrics& metrics;
  std::string model_name;
  SamplingParams defaults;  // from generation_config.json
  const std::atomic<bool>& stop;
  int max_prompt_tokens = 0;
};

// The request body as JSON (an object); 400 naming the problem otherwise.
ojson parse_body(const httplib::Request& req);

// Typed optional fields: 400 naming the field when present with the wrong type.
std::optional<double> number_field(const ojson& body, const char* name);
std::optional<long long> integer_field(const ojson& body, const char* name);
std::optional<bool> bool_field(const ojson& body, const char* name);
std::optional<std::string> string_field(const ojson& body, const char* name);
// "stop": a string or an array of strings (null: none).
std::vector<std::string> stop_field(const ojson& body, const char* name);
// The OpenAI sampling fields (temperature, top_p, top_k, min_p, presence/frequency/repetition penalties, seed)
// over the model's generation_config defaults; a random seed when none is given. Validated.
SamplingParams openai_sampling(const ServerContext& ctx, const ojson& body);

// Checks the prompt against the context and returns max_new_tokens (requested, or what fits).
int fit_generation(const ServerContext& ctx, size_t prompt_tokens, std::optional<long long> requested,
                   const char* requested_name);

// Submits, mapping QueueFull to 429 and other scheduler refusals to 400.
std::unique_ptr<RequestStream> submit_request(ServerContext& ctx, SequenceRequest request);

// A submitted request read event by event, recording time to first token and inter-token latency.
class TimedStream {
 public:
  TimedStream(ServerContext& ctx, std::unique_ptr<RequestStream> stream);
  // The next event; nullopt after Finished. Waits at most `wait` (then timed_out()); cancels on server stop.
  std::optional<StreamEvent> next(std::chrono::milliseconds wait = std::chrono::milliseconds(3600000));
  bool timed_out() const { return timed_out_; }
  void cancel() { stream_->cancel(); }

 private:
  ServerContext& ctx_;
  std::unique_ptr<RequestStream> stream_;
  std::chrono::steady_clock::time_point start_, last_;
  bool first_ = true;
  bool timed_out_ = false;
};

// OpenAI's usage object, with the prompt positions served from the prefix cache.
inline nlohmann::json usage_json(const StreamEvent& finished) {
  return {{"prompt_tokens", finished.prompt_tokens},
          {"completion_tokens", finished.completion_tokens},
          {"total_tokens", finished.prompt_tokens + finished.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", finished.cached_prompt_tokens}}}};
}

// Server-sent events: "data: <payload>\n\n".
// A response body: compact JSON, with invalid UTF-8 in generated text replaced by U+FFFD instead of throwing.
inline std::string response_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

inline std::string sse_event(const std::string& payload) { return "data: " + payload + "\n\n"; }

// OpenAI's finish_reason for a scheduler finish.
inline const char* openai_finish(FinishReason r) { return r == FinishReason::Stop ? "stop" : "length"; }

std::string new_completion_id(const char* prefix);
long long unix_time();

// Wraps a handler so every failure becomes an OpenAI-shaped error (never 500 for bad input).
httplib::Server::Handler guarded_handler(std::function<void(const httplib::Request&, httplib::Response&)> handler);

void register_openai_chat(httplib::Server& svr, ServerContext& ctx);
void register_openai_completions(httplib::Server& svr, ServerContext& ctx);
void register_tgi_routes(httplib::Server& svr, ServerContext& ctx);

}  // namespace llama31::server
