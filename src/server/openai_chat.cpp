// POST /v1/chat/completions: OpenAI chat requests -> chat template -> scheduler; whole or streamed
// (SSE chat.completion.chunk) answers, tool calls in OpenAI's shape, constrained decoding for forced calls.
#include <algorithm>

#include <fmt/format.h>

#include "chat/chat_template.h"
#include "chat/folder_template.h"
#include "chat/tool_calls.h"
#include "server/server_context.h"
#include "util/error.h"

namespace llama31::server {

namespace {

using nlohmann::json;

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

json logprob_entry(const StreamEvent& ev) {
  json top = json::array();
  for (const auto& t : ev.top_logprobs)
    top.push_back({{"token", t.text}, {"logprob", t.logprob}, {"bytes", bytes_of(t.text)}});
  return {{"token", ev.logprob->text}, {"logprob", ev.logprob->logprob}, {"bytes", bytes_of(ev.logprob->text)},
          {"top_logprobs", top}};
}

struct ChatPlan {
  std::vector<TokenId> prompt;
  int max_new_tokens = 0;
  SamplingParams sampling;
  std::vector<std::string> stop;
  int top_logprobs = -1;
  int n = 1;
  bool stream = false;
  bool include_usage = false;
  bool parse_tools = false;
  chat::ToolCallParseOptions parse_options;
  std::function<std::unique_ptr<TokenConstraint>()> make_constraint;
};

ChatPlan plan_chat(const ServerContext& ctx, const ojson& body) {
  ChatPlan plan;
  if (auto model = string_field(body, "model"); model && !model->empty() && *model != ctx.model_name)
    throw HttpError(404, fmt::format("model '{}' not found; this server serves '{}'", *model, ctx.model_name), "model",
                    "not_found_error");
  auto messages = body.find("messages");
  if (messages == body.end() || !messages->is_array() || messages->empty())
    throw HttpError(400, "'messages' must be a non-empty array", "messages");
  ojson tools = nullptr;
  if (auto it = body.find("tools"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) throw HttpError(400, "'tools' must be an array", "tools");
    for (const auto& t : *it)
      if (!t.is_object() || !t.contains("function") || !t["function"].is_object() ||
          !t["function"].contains("name") || !t["function"]["name"].is_string())
        throw HttpError(400, "each entry of 'tools' must be {\"type\":\"function\",\"function\":{\"name\":...}}",
                        "tools");
    if (!it->empty()) tools = *it;
  }
  // tool_choice: auto (default) / none / required / {"type":"function","function":{"name":...}}
  std::string choice = "auto";
  json forced = json::array();
  if (auto it = body.find("tool_choice"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      choice = it->get<std::string>();
      if (choice != "auto" && choice != "none" && choice != "required")
        throw HttpError(400, "'tool_choice' must be auto, none, required or a named function", "tool_choice");
    } else if (it->is_object() && it->contains("function") && (*it)["function"].is_object() &&
               (*it)["function"].contains("name") && (*it)["function"]["name"].is_string()) {
      choice = "named";
      const std::string wanted = (*it)["function"]["name"].get<std::string>();
      if (tools.is_array())
        for (const auto& t : tools)
          if (t["function"]["name"] == wanted) forced.push_back(json::parse(t["function"].dump()));
      if (forced.empty()) throw HttpError(400, fmt::format("tool_choice names '{}', which is not in 'tools'", wanted),
                                          "tool_choice");
    } else {
      throw HttpError(400, "'tool_choice' must be auto, none, required or a named function", "tool_choice");
    }
  }
  if (choice == "required") {
    if (!tools.is_array()) throw HttpError(400, "tool_choice 'required' needs 'tools'", "tool_choice");
    for (const auto& t : tools) forced.push_back(json::parse(t["function"].dump()));
  }
  if (choice == "none") tools = nullptr;

  ojson extra = ojson::object();
  if (auto it = body.find("chat_template_kwargs"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) throw HttpError(400, "'chat_template_kwargs' must be an object", "chat_template_kwargs");
    for (const auto& [k, v] : it->items()) extra[k] = v;
  }
  bool builtin = false;
  if (auto it = body.find("builtin_tools"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) throw HttpError(400, "'builtin_tools' must be an array of names", "builtin_tools");
    for (const auto& b : *it)
      if (!b.is_string()) throw HttpError(400, "'builtin_tools' must be an array of names", "builtin_tools");
    extra["builtin_tools"] = *it;
    builtin = !it->empty();
  }
  const FolderTemplate tmpl = template_from_tokenizer_config(ctx.model.folder().tokenizer_config_document(), tools.is_array());
  const std::string text = render_chat(tmpl.source, *messages, tools, true, extra, tmpl.bos_token);
  plan.prompt = ctx.model.tokenizer().encode(text, /*parse_special=*/true);

  plan.parse_tools = tools.is_array() || builtin || !forced.empty();
  if (tools.is_array())
    for (const auto& t : tools) plan.parse_options.custom_tool_names.push_back(t["function"]["name"].get<std::string>());

  auto max_tokens = integer_field(body, "max_completion_tokens");
  const char* max_name = "max_completion_tokens";
  if (!max_tokens) {
    max_tokens = integer_field(body, "max_tokens");
    max_name = "max_tokens";
  }
  plan.max_new_tokens = fit_generation(ctx, plan.prompt.size(), max_tokens, max_name);

  plan.sampling = openai_sampling(ctx, body);
  plan.stop = stop_field(body, "stop");
  if (auto v = integer_field(body, "n")) {
    if (*v < 1 || *v > 16) throw HttpError(400, "'n' must be between 1 and 16", "n");
    plan.n = static_cast<int>(*v);
  }
  if (bool_field(body, "logprobs").value_or(false)) {
    const auto top = integer_field(body, "top_logprobs").value_or(0);
    if (top < 0 || top > 20) throw HttpError(400, "'top_logprobs' must be between 0 and 20", "top_logprobs");
    plan.top_logprobs = static_cast<int>(top);
  }
  plan.stream = bool_field(body, "stream").value_or(false);
  if (auto it = body.find("stream_options"); it != body.end() && it->is_object())
    plan.include_usage = bool_field(*it, "include_usage").value_or(false);

  const JsonConstraintFactory& factory = ctx.constraints;
  if (!forced.empty()) {
    plan.make_constraint = [&factory, forced] { return factory.tool_call(forced); };
  } else if (auto it = body.find("response_format"); it != body.end() && !it->is_null()) {
    const std::string type = it->is_object() && (*it).contains("type") && (*it)["type"].is_string()
                                 ? (*it)["type"].get<std::string>() : "";
    if (type == "json_object") {
      plan.make_constraint = [&factory] { return factory.any_json_object(); };
    } else if (type == "json_schema") {
      const auto& js = (*it).contains("json_schema") ? (*it)["json_schema"] : ojson();
      if (!js.is_object() || !js.contains("schema"))
        throw HttpError(400, "response_format json_schema needs json_schema.schema", "response_format");
      json schema = json::parse(js["schema"].dump());
      plan.make_constraint = [&factory, schema] { return factory.json_schema(schema); };
    } else if (type != "text") {
      throw HttpError(400, "'response_format.type' must be text, json_object or json_schema", "response_format");
    }
  }
  if (plan.make_constraint) (void)plan.make_constraint();  // schema errors -> 400 before anything runs
  return plan;
}

std::vector<TimedStream> submit_choices(ServerContext& ctx, const ChatPlan& plan) {
  std::vector<TimedStream> streams;
  for (int i = 0; i < plan.n; ++i) {
    SequenceRequest r;
    r.prompt = plan.prompt;
    r.max_new_tokens = plan.max_new_tokens;
    r.sampling = plan.sampling;
    r.sampling.seed = plan.sampling.seed + static_cast<uint64_t>(i);
    r.stop_ids = ctx.model.stop_ids();
    r.stop_strings = plan.stop;
    r.top_logprobs = plan.top_logprobs;
    if (plan.make_constraint) r.constraint = plan.make_constraint();
    streams.emplace_back(ctx, submit_request(ctx, std::move(r)));
  }
  return streams;
}

bool is_stop_token(const ServerContext& ctx, const StreamEvent& ev) {
  const auto& ids = ctx.model.stop_ids();
  return ev.text.empty() && std::find(ids.begin(), ids.end(), ev.token) != ids.end();
}

json tool_call_deltas(const std::vector<chat::ToolCall>& calls) {
  json out = json::array();
  for (size_t k = 0; k < calls.size(); ++k)
    out.push_back({{"index", k},
                   {"id", calls[k].id},
                   {"type", "function"},
                   {"function", {{"name", calls[k].name}, {"arguments", calls[k].arguments_json}}}});
  return out;
}

void chat_whole(ServerContext& ctx, const ChatPlan& plan, httplib::Response& res) {
  auto streams = submit_choices(ctx, plan);
  json choices = json::array();
  StreamEvent totals;  // usage over the choices: prompt and cached positions of one, completions of all
  for (int i = 0; i < plan.n; ++i) {
    std::string text, stop_text;
    json logprobs = json::array();
    StreamEvent finished;
    while (auto ev = streams[static_cast<size_t>(i)].next()) {
      if (ev->kind == StreamEvent::Kind::Finished) {
        finished = *ev;
        continue;
      }
      if (is_stop_token(ctx, *ev)) stop_text = ctx.model.tokenizer().token_bytes(ev->token);
      else text += ev->text;
      if (ev->logprob && !is_stop_token(ctx, *ev)) logprobs.push_back(logprob_entry(*ev));
    }
    if (!finished.error.empty()) throw HttpError(500, "generation failed: " + finished.error, {}, "server_error");
    totals.prompt_tokens = finished.prompt_tokens;
    totals.cached_prompt_tokens = finished.cached_prompt_tokens;
    totals.completion_tokens += finished.completion_tokens;
    json message = {{"role", "assistant"}, {"content", text}};
    std::string finish = openai_finish(finished.finish);
    if (plan.parse_tools) {
      auto parsed = chat::parse_assistant_message(text + stop_text, plan.parse_options);
      message = chat::to_openai_assistant_message(parsed);
      if (!parsed.tool_calls.empty()) finish = "tool_calls";
    }
    choices.push_back({{"index", i},
                       {"message", message},
                       {"logprobs", plan.top_logprobs >= 0 ? json{{"content", logprobs}} : json(nullptr)},
                       {"finish_reason", finish}});
  }
  json out = {{"id", new_completion_id("chatcmpl")},
              {"object", "chat.completion"},
              {"created", unix_time()},
              {"model", ctx.model_name},
              {"choices", choices},
              {"usage", usage_json(totals)}};
  res.set_content(response_json(out), "application/json");
}

// State of one streamed chat answer, choice after choice.
struct ChatStream {
  ServerContext* ctx = nullptr;
  ChatPlan plan;
  std::vector<TimedStream> streams;
  std::string id = new_completion_id("chatcmpl");
  long long created = unix_time();
  size_t choice = 0;
  bool role_sent = false;
  std::unique_ptr<chat::ToolCallStreamParser> parser;
  StreamEvent totals;  // usage over the choices: prompt and cached positions of one, completions of all

  json chunk(const json& delta, const json& finish, const json& logprobs = nullptr) const {
    return {{"id", id},
            {"object", "chat.completion.chunk"},
            {"created", created},
            {"model", ctx->model_name},
            {"choices",
             {{{"index", choice}, {"delta", delta}, {"logprobs", logprobs}, {"finish_reason", finish}}}}};
  }
  void cancel_all() {
    for (auto& s : streams) s.cancel();
  }
  // Produces the next events' text ("" while waiting); sets done at the end.
  std::string step(bool& done) {
    std::string out;
    if (choice >= streams.size()) {
      if (plan.include_usage)
        out += sse_event(response_json({{"id", id},
                                        {"object", "chat.completion.chunk"},
                                        {"created", created},
                                        {"model", ctx->model_name},
                                        {"choices", json::array()},
                                        {"usage", usage_json(totals)}}));
      out += "data: [DONE]\n\n";
      done = true;
      return out;
    }
    if (!role_sent) {
      role_sent = true;
      if (plan.parse_tools) parser = std::make_unique<chat::ToolCallStreamParser>(plan.parse_options);
      return sse_event(response_json(chunk({{"role", "assistant"}, {"content", ""}}, nullptr)));
    }
    auto ev = streams[choice].next(std::chrono::milliseconds(200));
    if (!ev) return out;  // waiting
    if (ev->kind == StreamEvent::Kind::Token) {
      const bool stop_token = is_stop_token(*ctx, *ev);
      std::string piece = stop_token ? ctx->model.tokenizer().token_bytes(ev->token) : ev->text;
      std::string content = parser ? parser->feed(piece) : (stop_token ? std::string() : piece);
      json lp = ev->logprob && !stop_token ? json{{"content", json::array({logprob_entry(*ev)})}} : json(nullptr);
      if (!content.empty() || !lp.is_null()) {
        out += sse_event(response_json(chunk({{"content", content}}, nullptr, lp)));
      }
      return out;
    }
    if (!ev->error.empty()) {
      out += sse_event(
          response_json({{"error", {{"message", "generation failed: " + ev->error}, {"type", "server_error"}}}}));
      out += "data: [DONE]\n\n";
      done = true;
      return out;
    }
    totals.prompt_tokens = ev->prompt_tokens;
    totals.cached_prompt_tokens = ev->cached_prompt_tokens;
    totals.completion_tokens += ev->completion_tokens;
    std::string finish = openai_finish(ev->finish);
    if (parser) {
      auto parsed = parser->finish();
      if (!parsed.tool_calls.empty()) {
        out += sse_event(response_json(chunk({{"tool_calls", tool_call_deltas(parsed.tool_calls)}}, nullptr)));
        finish = "tool_calls";
      } else if (auto rest = parser->remaining_content(); !rest.empty()) {
        out += sse_event(response_json(chunk({{"content", rest}}, nullptr)));
      }
    }
    out += sse_event(response_json(chunk(json::object(), finish)));
    ++choice;
    role_sent = false;
    return out;
  }
};

void chat_streamed(ServerContext& ctx, ChatPlan plan, httplib::Response& res) {
  auto state = std::make_shared<ChatStream>();
  state->ctx = &ctx;
  state->streams = submit_choices(ctx, plan);
  state->plan = std::move(plan);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [state](size_t, httplib::DataSink& sink) {
        bool done = false;
        const std::string out = state->step(done);
        if (!out.empty() && !sink.write(out.data(), out.size())) {
          state->cancel_all();  // the client went away: free the slots now
          return false;
        }
        if (done) sink.done();
        return true;
      },
      [state](bool success) {
        if (!success) state->cancel_all();
      });
}

}  // namespace

void register_openai_chat(httplib::Server& svr, ServerContext& ctx) {
  svr.Post("/v1/chat/completions", guarded_handler([&ctx](const httplib::Request& req, httplib::Response& res) {
             ChatPlan plan = plan_chat(ctx, parse_body(req));
             if (plan.stream) chat_streamed(ctx, std::move(plan), res);
             else chat_whole(ctx, plan, res);
           }));
}

}  // namespace llama31::server
