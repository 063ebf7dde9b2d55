// Text Generation Inference's routes: POST /generate, POST /generate_stream (SSE), GET /info.
#include <fmt/format.h>

#include "server/server_context.h"
#include "util/error.h"

namespace llama31::server {

namespace {

using nlohmann::json;


struct TgiRequest {
  std::string inputs;
  bool details = false;
  bool return_full_text = false;
  uint64_t seed = 0;
  SequenceRequest request;
};

TgiRequest plan_tgi(const ServerContext& ctx, const ojson& body) {
  TgiRequest t;
  auto inputs = string_field(body, "inputs");
  if (!inputs) throw HttpError(400, "'inputs' must be a string", "inputs");
  t.inputs = *inputs;
  ojson p = ojson::object();
  if (auto it = body.find("parameters"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) throw HttpError(400, "'parameters' must be an object", "parameters");
    p = *it;
  }
  SequenceRequest& r = t.request;
  r.prompt.push_back(ctx.model.bos_id());
  const auto ids = ctx.model.tokenizer().encode(t.inputs, false);
  r.prompt.insert(r.prompt.end(), ids.begin(), ids.end());
  r.max_new_tokens = fit_generation(ctx, r.prompt.size(), integer_field(p, "max_new_tokens").value_or(100),
                                    "max_new_tokens");
  SamplingParams& s = r.sampling;
  s = ctx.defaults;
  const auto temperature = number_field(p, "temperature");
  const auto top_p = number_field(p, "top_p");
  const auto top_k = integer_field(p, "top_k");
  const bool sample = bool_field(p, "do_sample").value_or(false) || temperature || top_p || top_k;
  if (!sample) s.temperature = 0;  // TGI: greedy unless sampling is asked for
  if (temperature) s.temperature = *temperature;
  if (top_p) s.top_p = *top_p;
  if (top_k) s.top_k = static_cast<int>(std::max(*top_k, 0LL));
  if (auto v = number_field(p, "repetition_penalty")) s.repetition_penalty = *v;
  if (auto v = number_field(p, "frequency_penalty")) s.frequency_penalty = *v;
  if (auto v = integer_field(p, "seed")) s.seed = static_cast<uint64_t>(*v);
  else s.seed = std::random_device{}();
  s.validate();
  t.seed = s.seed;
  r.stop_strings = stop_field(p, "stop");
  r.stop_ids = ctx.model.stop_ids();
  r.top_logprobs = 0;  // TGI reports every token's logprob
  t.details = bool_field(p, "details").value_or(false);
  t.return_full_text = bool_field(p, "return_full_text").value_or(false);
  return t;
}

const char* tgi_finish(const StreamEvent& finished, bool saw_stop_token) {
  if (finished.finish == FinishReason::Stop) return saw_stop_token ? "eos_token" : "stop_sequence";
  return "length";
}

json token_json(const ServerContext& ctx, const StreamEvent& ev) {
  const bool special = ctx.model.tokenizer().is_special(ev.token);
  return {{"id", ev.token},
          {"text", special ? ctx.model.tokenizer().token_bytes(ev.token) : ev.text},
          {"logprob", ev.logprob ? json(ev.logprob->logprob) : json(nullptr)},
          {"special", special}};
}

void generate(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  TgiRequest t = plan_tgi(ctx, parse_body(req));
  TimedStream stream(ctx, submit_request(ctx, std::move(t.request)));
  std::string text;
  json tokens = json::array();
  StreamEvent finished;
  bool saw_stop_token = false;
  while (auto ev = stream.next()) {
    if (ev->kind == StreamEvent::Kind::Finished) {
      finished = *ev;
      continue;
    }
    text += ev->text;
    if (ctx.model.tokenizer().is_special(ev->token)) saw_stop_token = true;
    tokens.push_back(token_json(ctx, *ev));
  }
  if (!finished.error.empty()) throw HttpError(500, "generation failed: " + finished.error, {}, "server_error");
  json out = {{"generated_text", t.return_full_text ? t.inputs + text : text}};
  if (t.details)
    out["details"] = {{"finish_reason", tgi_finish(finished, saw_stop_token)},
                      {"generated_tokens", finished.completion_tokens},
                      {"seed", t.seed},
                      {"prefill", json::array()},
                      {"tokens", tokens}};
  res.set_content(response_json(out), "application/json");
}

struct TgiStream {
  std::unique_ptr<TimedStream> stream;
  TgiRequest t;
  std::string text;
  bool saw_stop_token = false;
  size_t index = 0;
  bool done = false;
};

void generate_stream(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto state = std::make_shared<TgiStream>();
  state->t = plan_tgi(ctx, parse_body(req));
  state->stream = std::make_unique<TimedStream>(ctx, submit_request(ctx, std::move(state->t.request)));
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [state, &ctx](size_t, httplib::DataSink& sink) {
        std::string out;
        auto ev = state->stream->next(std::chrono::milliseconds(200));
        if (ev && ev->kind == StreamEvent::Kind::Token) {
          state->text += ev->text;
          if (ctx.model.tokenizer().is_special(ev->token)) state->saw_stop_token = true;
          // A token's event goes out now; the last token's event (the end) carries the whole text.
          json e = {{"index", ++state->index}, {"token", token_json(ctx, *ev)}, {"generated_text", nullptr},
                    {"details", nullptr}, {"top_tokens", nullptr}};
          out = sse_event(response_json(e));
        } else if (ev) {
          const std::string full = state->t.return_full_text ? state->t.inputs + state->text : state->text;
          json e = {{"index", state->index},
                    {"token", {{"id", -1}, {"text", ""}, {"logprob", nullptr}, {"special", true}}},
                    {"generated_text", full},
                    {"details",
                     {{"finish_reason", tgi_finish(*ev, state->saw_stop_token)},
                      {"generated_tokens", ev->completion_tokens},
                      {"seed", state->t.seed}}},
                    {"top_tokens", nullptr}};
          if (!ev->error.empty()) e = {{"error", ev->error}, {"error_type", "generation"}};
          out = sse_event(response_json(e));
          state->done = true;
        }
        if (!out.empty() && !sink.write(out.data(), out.size())) {
          state->stream->cancel();
          return false;
        }
        if (state->done) sink.done();
        return true;
      },
      [state](bool success) {
        if (!success) state->stream->cancel();
      });
}

}  // namespace

void register_tgi_routes(httplib::Server& svr, ServerContext& ctx) {
  svr.Post("/generate", guarded_handler([&ctx](const httplib::Request& req, httplib::Response& res) {
             generate(ctx, req, res);
           }));
  svr.Post("/generate_stream", guarded_handler([&ctx](const httplib::Request& req, httplib::Response& res) {
             generate_stream(ctx, req, res);
           }));
  svr.Get("/info", [&ctx](const httplib::Request&, httplib::Response& res) {
    const auto& o = ctx.scheduler.options();
    json info = {{"model_id", ctx.model_name},
                 {"model_sha", nullptr},
                 {"model_dtype", "bfloat16"},
                 {"model_device_type", "cpu"},
                 {"model_pipeline_tag", "text-generation"},
                 {"max_concurrent_requests", o.max_batch + o.max_queue},
                 {"max_best_of", 1},
                 {"max_stop_sequences", 16},
                 {"max_input_tokens", ctx.max_prompt_tokens > 0 ? std::min(ctx.max_prompt_tokens, o.max_context - 1)
                                                                : o.max_context - 1},
                 {"max_total_tokens", o.max_context},
                 {"max_batch_size", o.max_batch},
                 {"validation_workers", 1},
                 {"router", "llama31"},
                 {"version", "0.1.0"},
                 {"sha", nullptr},
                 {"docker_label", nullptr}};
    res.set_content(info.dump(), "application/json");
  });
}

}  // namespace llama31::server
