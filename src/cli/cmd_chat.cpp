// llama31 chat: interactive chat on the terminal (stdin lines in, streamed answers out), or with
// --messages a one-shot reply printed as an OpenAI-style assistant message. Prompts and banners go to
// stderr, so stdout holds only the assistant text and the tool-call lines.
#include <cstdio>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "chat/conversation_stream.h"
#include "chat/folder_template.h"
#include "chat/tool_calls.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "util/error.h"

namespace llama31::cli {

namespace {

struct ChatOptions {
  ModelOptions model;
  std::string system;
  std::string tools_file;
  std::string builtin_tools;
  std::string messages_file;
  int n_predict = 512;
  std::optional<double> temperature, top_p;
  std::optional<int> top_k;
  std::optional<uint64_t> seed;
};

// Everything a turn needs that does not change between turns.
struct ChatSession {
  ChatSession(const ChatOptions& o, const LoadedModel& m) : options(o), model(m) {}
  const ChatOptions& options;
  const LoadedModel& model;
  FolderTemplate tmpl;
  nlohmann::ordered_json tools;  // null: none
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  SamplingParams sampling;
  chat::ToolCallParseOptions parse_options;
};

SamplingParams sampling_params(const ChatOptions& o, const LoadedModel& model) {
  SamplingParams s = SamplingParams::from_generation_config(model.folder().generation);
  if (o.temperature) s.temperature = *o.temperature;
  if (o.top_p) s.top_p = *o.top_p;
  if (o.top_k) s.top_k = *o.top_k;
  s.seed = o.seed ? *o.seed : std::random_device{}();
  s.validate();
  return s;
}

// Renders and generates one assistant answer; on_text gets the streamed pieces.
GenerationResult generate_answer(const ChatSession& session, const nlohmann::ordered_json& messages,
                                 const std::function<void(std::string_view)>& on_text) {
  const std::string prompt = render_chat(session.tmpl.source, messages, session.tools, true, session.extra,
                                         session.tmpl.bos_token);
  GenerationRequest request;
  request.prompt = session.model.tokenizer().encode(prompt, /*parse_special=*/true);
  request.max_new_tokens = session.options.n_predict;
  request.stop_ids = session.model.stop_ids();
  request.sampling = session.sampling;
  KvCache cache(session.model.config(),
                context_size(session.options.model, session.model.config(),
                             static_cast<long long>(request.prompt.size()) + session.options.n_predict));
  return generate(session.model, cache, request, on_text);
}

bool ended_with_eom(const LoadedModel& model, const GenerationResult& result) {
  if (result.tokens.empty()) return false;
  const auto eom = model.tokenizer().encode(chat::kEndOfMessage, /*parse_special=*/true);
  return eom.size() == 1 && result.tokens.back() == eom[0];
}

const char* openai_finish_reason(const GenerationResult& result, const chat::ParsedAssistantMessage& message) {
  if (!message.tool_calls.empty()) return "tool_calls";
  return result.finish == FinishReason::Stop ? "stop" : "length";
}

void run_one_shot(const ChatSession& session) {
  auto messages = read_json_file(session.options.messages_file, "--messages");
  if (!messages.is_array() || messages.empty()) fail("--messages: expected a non-empty JSON array of messages");
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) fail("--messages[{}]: needs a string \"role\"", i);
    const std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "ipython" && role != "tool")
      fail("--messages[{}]: unknown role \"{}\" (system, user, assistant, ipython or tool)", i, role);
  }
  if (!session.options.system.empty()) {
    messages.insert(messages.begin(), nlohmann::ordered_json{{"role", "system"}, {"content", session.options.system}});
  }
  const auto result = generate_answer(session, messages, {});
  std::string text = result.text;
  if (ended_with_eom(session.model, result)) text += chat::kEndOfMessage;
  const auto parsed = chat::parse_assistant_message(text, session.parse_options);
  nlohmann::ordered_json out;
  out["message"] = chat::to_openai_assistant_message(parsed);
  out["finish_reason"] = openai_finish_reason(result, parsed);
  std::printf("%s\n", out.dump().c_str());
}

const char* kHelp =
    "commands: /reset (clear the history, keep the system prompt), /system TEXT (set the system prompt),\n"
    "          /exit (or end of input) quits, /help shows this\n";

void run_interactive(const ChatSession& session) {
  std::string system = session.options.system;
  nlohmann::ordered_json history = nlohmann::ordered_json::array();
  const auto conversation = [&] {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
    for (const auto& m : history) messages.push_back(m);
    return messages;
  };
  std::fprintf(stderr, "llama31 chat: type a message; /help for commands\n");
  for (;;) {
    std::fprintf(stderr, "> ");
    std::fflush(stderr);
    std::string line;
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line == "/exit" || line == "/quit") break;
    if (line == "/help") {
      std::fputs(kHelp, stderr);
      continue;
    }
    if (line == "/reset") {
      history = nlohmann::ordered_json::array();
      std::fprintf(stderr, "(history cleared)\n");
      continue;
    }
    if (line == "/system" || line.rfind("/system ", 0) == 0) {
      system = line.size() > 8 ? line.substr(8) : std::string();
      std::fprintf(stderr, "(system prompt %s)\n", system.empty() ? "cleared" : "set");
      continue;
    }
    if (line.empty()) continue;
    if (line[0] == '/') {
      std::fprintf(stderr, "unknown command %s; /help lists the commands\n", line.c_str());
      continue;
    }
    history.push_back({{"role", "user"}, {"content", line}});
    // An answer with tool calls continues after the tool results, a few rounds at most.
    for (int round = 0; round < 8; ++round) {
      chat::AssistantDisplay display(session.parse_options);
      const auto result = generate_answer(session, conversation(), [&](std::string_view piece) {
        const std::string text = display.feed(piece);
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      });
      const auto end = display.finish(ended_with_eom(session.model, result));
      std::fwrite(end.text.data(), 1, end.text.size(), stdout);
      std::fputc('\n', stdout);
      for (const auto& call_line : end.call_lines) std::printf("%s\n", call_line.c_str());
      std::fflush(stdout);
      nlohmann::ordered_json assistant = chat::to_openai_assistant_message(end.message);
      if (assistant["content"].is_null()) assistant["content"] = "";
      history.push_back(assistant);
      if (end.message.tool_calls.empty()) break;
      bool answered = true;
      for (const auto& call : end.message.tool_calls) {
        std::fprintf(stderr, "tool result> ");
        std::fflush(stderr);
        std::string result_line;
        if (!std::getline(std::cin, result_line)) {
          answered = false;
          break;
        }
        nlohmann::ordered_json tool_message = chat::ipython_tool_result_message(chat::tool_result_from_line(result_line));
        if (call.kind == "custom") tool_message["tool_call_id"] = call.id;
        history.push_back(tool_message);
      }
      if (!answered) return;
    }
  }
}

void run_chat(const ChatOptions& o) {
  auto model = load_model(o.model);
  ChatSession session(o, *model);
  if (!o.tools_file.empty()) {
    session.tools = read_json_file(o.tools_file, "--tools");
    if (!session.tools.is_array()) fail("--tools {}: expected a JSON array of tools", o.tools_file);
    for (const auto& t : session.tools) {
      if (t.contains("function") && t["function"].contains("name") && t["function"]["name"].is_string())
        session.parse_options.custom_tool_names.push_back(t["function"]["name"].get<std::string>());
    }
  }
  if (!o.builtin_tools.empty()) {
    nlohmann::ordered_json names = nlohmann::ordered_json::array();
    std::stringstream list(o.builtin_tools);
    for (std::string name; std::getline(list, name, ',');) {
      if (name.empty()) continue;
      if (name != "brave_search" && name != "wolfram_alpha" && name != "code_interpreter")
        fail("--builtin-tools: unknown tool \"{}\" (brave_search, wolfram_alpha, code_interpreter)", name);
      names.push_back(name);
    }
    session.extra["builtin_tools"] = names;
  }
  session.tmpl = template_from_tokenizer_config(model->folder().tokenizer_config_document(), !session.tools.is_null());
  session.sampling = sampling_params(o, *model);
  if (!o.messages_file.empty()) {
    run_one_shot(session);
  } else {
    run_interactive(session);
  }
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  auto* sub = app.add_subcommand("chat", "Chat with the model on the terminal (stdin lines in, answers streamed out)");
  add_model_options(*sub, o->model);
  sub->add_option("--system", o->system, "System prompt");
  sub->add_option("--tools", o->tools_file, "JSON file: an array of OpenAI function tools");
  sub->add_option("--builtin-tools", o->builtin_tools, "Comma-separated built-in tools: brave_search,wolfram_alpha,code_interpreter");
  sub->add_option("--messages", o->messages_file,
                  "JSON file of OpenAI-style messages: answer once and print the assistant message as JSON");
  sub->add_option("-n,--max-tokens", o->n_predict, "Tokens to generate at most per answer")->capture_default_str()
      ->check(whole_number_at_least(1));
  sub->add_option("--temp,--temperature", o->temperature, "Temperature; 0 is greedy (default: generation_config.json)");
  sub->add_option("--top-p", o->top_p, "Nucleus sampling mass (default: generation_config.json)");
  sub->add_option("--top-k", o->top_k, "Keep the K most likely tokens; 0 is off");
  sub->add_option("-s,--seed", o->seed, "Random seed (default: random)");
  sub->callback([o] { run_chat(*o); });
}

}  // namespace llama31::cli
