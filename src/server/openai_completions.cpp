// POST /v1/completions: raw-text completion (prompt as text, or token ids), whole or streamed, with
// OpenAI's legacy logprobs shape.
#include <fmt/format.h>

#include "server/server_context.h"
#include "util/error.h"

namespace llama31::server {

namespace {

using nlohmann::json;


struct CompletionState {
  ServerContext* ctx = nullptr;
  std::unique_ptr<TimedStream> stream;
  std::string id = new_completion_id("cmpl");
  long long created = unix_time();
  bool logprobs = false;
  bool include_usage = false;
  bool done = false;

  json choice(const std::string& text, const json& finish, const json& lp) const {
    return {{"index", 0}, {"text", text}, {"logprobs", lp}, {"finish_reason", finish}};
  }
  json envelope(const json& choices) const {
    return {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", ctx->model_name},
            {"choices", choices}};
  }
};

json legacy_logprobs(const std::vector<StreamEvent>& events) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  size_t offset = 0;
  for (const auto& ev : events) {
    if (!ev.logprob) continue;
    tokens.push_back(ev.logprob->text);
    lps.push_back(ev.logprob->logprob);
    json top = json::object();
    for (const auto& t : ev.top_logprobs) top[t.text] = t.logprob;
    tops.push_back(top);
    offsets.push_back(offset);
    offset += ev.text.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

void completions(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  const ojson body = parse_body(req);
  if (auto model = string_field(body, "model"); model && !model->empty() && *model != ctx.model_name)
    throw HttpError(404, fmt::format("model '{}' not found; this server serves '{}'", *model, ctx.model_name), "model",
                    "not_found_error");
  SequenceRequest r;
  auto prompt = body.find("prompt");
  if (prompt == body.end()) throw HttpError(400, "'prompt' is required", "prompt");
  if (prompt->is_string()) {
    r.prompt.push_back(ctx.model.bos_id());
    const auto ids = ctx.model.tokenizer().encode(prompt->get<std::string>(), false);
    r.prompt.insert(r.prompt.end(), ids.begin(), ids.end());
  } else if (prompt->is_array() && !prompt->empty() && std::all_of(prompt->begin(), prompt->end(), [](const ojson& v) {
               return v.is_number_integer();
             })) {
    const long long vocab = ctx.model.tokenizer().vocab_size();
    for (const auto& v : *prompt) {
      const long long id = v.get<long long>();
      if (id < 0 || id >= vocab)
        throw HttpError(400, fmt::format("prompt token id {} is outside the vocabulary (0..{})", id, vocab - 1), "prompt");
      r.prompt.push_back(static_cast<TokenId>(id));
    }
  } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
    r.prompt.push_back(ctx.model.bos_id());
    const auto ids = ctx.model.tokenizer().encode((*prompt)[0].get<std::string>(), false);
    r.prompt.insert(r.prompt.end(), ids.begin(), ids.end());
  } else {
    throw HttpError(400, "'prompt' must be a string or a non-empty array of token ids", "prompt");
  }
  r.max_new_tokens = fit_generation(ctx, r.prompt.size(), integer_field(body, "max_tokens").value_or(16), "max_tokens");
  r.sampling = openai_sampling(ctx, body);
  r.stop_strings = stop_field(body, "stop");
  r.stop_ids = ctx.model.stop_ids();
  // vLLM's extension for benchmarks: generate max_tokens whatever the model samples.
  if (body.contains("ignore_eos") && body["ignore_eos"].is_boolean() && body["ignore_eos"].get<bool>()) r.stop_ids.clear();
  auto state = std::make_shared<CompletionState>();
  state->ctx = &ctx;
  if (auto lp = integer_field(body, "logprobs")) {
    if (*lp < 0 || *lp > 20) throw HttpError(400, "'logprobs' must be between 0 and 20", "logprobs");
    r.top_logprobs = static_cast<int>(*lp);
    state->logprobs = true;
  }
  if (auto it = body.find("stream_options"); it != body.end() && it->is_object())
    state->include_usage = bool_field(*it, "include_usage").value_or(false);
  const bool stream = bool_field(body, "stream").value_or(false);
  state->stream = std::make_unique<TimedStream>(ctx, submit_request(ctx, std::move(r)));

  if (!stream) {
    std::string text;
    std::vector<StreamEvent> events;
    StreamEvent finished;
    while (auto ev = state->stream->next()) {
      if (ev->kind == StreamEvent::Kind::Finished) finished = *ev;
      else if (!(ev->text.empty() && !ev->logprob)) {
        text += ev->text;
        events.push_back(*ev);
      }
    }
    if (!finished.error.empty()) throw HttpError(500, "generation failed: " + finished.error, {}, "server_error");
    json out = state->envelope(json::array(
        {state->choice(text, openai_finish(finished.finish), state->logprobs ? legacy_logprobs(events) : json(nullptr))}));
    out["usage"] = usage_json(finished);
    res.set_content(response_json(out), "application/json");
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [state, &ctx](size_t, httplib::DataSink& sink) {
        auto ev = state->stream->next(std::chrono::milliseconds(200));
        std::string out;
        if (ev && ev->kind == StreamEvent::Kind::Token) {
          const bool stop_token = ev->text.empty() && std::find(ctx.model.stop_ids().begin(), ctx.model.stop_ids().end(),
                                                                ev->token) != ctx.model.stop_ids().end();
          if (!stop_token && (!ev->text.empty() || ev->logprob))
            out = sse_event(response_json(state->envelope(json::array(
                {state->choice(ev->text, nullptr,
                               state->logprobs ? legacy_logprobs({*ev}) : json(nullptr))}))));
        } else if (ev) {
          out = sse_event(
              response_json(state->envelope(json::array({state->choice("", openai_finish(ev->finish), nullptr)}))));
          if (state->include_usage) {
            json u = state->envelope(json::array());
            u["usage"] = usage_json(*ev);
            out += sse_event(response_json(u));
          }
          out += "data: [DONE]\n\n";
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

void register_openai_completions(httplib::Server& svr, ServerContext& ctx) {
  svr.Post("/v1/completions", guarded_handler([&ctx](const httplib::Request& req, httplib::Response& res) {
             completions(ctx, req, res);
           }));
}

}  // namespace llama31::server
