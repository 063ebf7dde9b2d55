// llama31 template: render a conversation with the model's chat template, byte for byte as
// transformers' apply_chat_template(tokenize=False) does.
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "chat/folder_template.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "util/error.h"

namespace llama31::cli {

namespace {

struct TemplateOptions {
  ModelOptions model;
  std::string messages_file;
  std::string tools_file;
  std::string builtin_tools;
  std::string date_string;
  bool no_generation_prompt = false;
};

void run_template(const TemplateOptions& o) {
  const auto dir = resolve_model_dir(o.model);
  const auto messages = read_json_file(o.messages_file, "--messages");
  nlohmann::ordered_json tools;  // null: no tools
  if (!o.tools_file.empty()) tools = read_json_file(o.tools_file, "--tools");
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  if (!o.builtin_tools.empty()) {
    nlohmann::ordered_json names = nlohmann::ordered_json::array();
    std::stringstream list(o.builtin_tools);
    for (std::string name; std::getline(list, name, ',');) {
      if (!name.empty()) names.push_back(name);
    }
    extra["builtin_tools"] = names;
  }
  if (!o.date_string.empty()) extra["date_string"] = o.date_string;
  const auto tmpl = template_from_tokenizer_config(read_tokenizer_config(dir), !tools.is_null());
  const std::string prompt = render_chat(tmpl.source, messages, tools, !o.no_generation_prompt, extra, tmpl.bos_token);
  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
}

}  // namespace

void add_template_command(CLI::App& app) {
  auto o = std::make_shared<TemplateOptions>();
  auto* sub = app.add_subcommand("template", "Render a conversation with the model's chat template (byte-exact with transformers)");
  add_model_options(*sub, o->model, /*with_ctx=*/false);
  sub->add_option("--messages", o->messages_file, "JSON file: an array of OpenAI-style messages")->required();
  sub->add_option("--tools", o->tools_file, "JSON file: an array of OpenAI function tools");
  sub->add_option("--builtin-tools", o->builtin_tools, "Comma-separated built-in tools: brave_search,wolfram_alpha,code_interpreter");
  sub->add_option("--date-string", o->date_string, "Date for the system prompt, e.g. \"26 Jul 2024\"");
  sub->add_flag("--no-generation-prompt", o->no_generation_prompt, "Do not end with the assistant header");
  sub->callback([o] { run_template(*o); });
}

}  // namespace llama31::cli
