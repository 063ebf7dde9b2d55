// llama31 template: render a conversation with the model's chat template, byte for byte as
// transformers' apply_chat_template(tokenize=False) does.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
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

nlohmann::ordered_json read_json_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open {}", what, path);
  std::stringstream text;
  text << in.rdbuf();
  try {
    return nlohmann::ordered_json::parse(text.str());
  } catch (const nlohmann::ordered_json::parse_error& e) {
    fail("{} {}: invalid JSON: {}", what, path, e.what());
  }
}

// The folder's chat template and BOS text (tokenizer_config.json), else the official Llama 3.1 template.
struct FolderTemplate {
  std::string source;
  std::string bos_token = "<|begin_of_text|>";
};

FolderTemplate folder_template(const std::filesystem::path& dir, bool with_tools) {
  FolderTemplate result;
  const auto config_path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) {
    const auto config = read_json_file(config_path.string(), "tokenizer_config.json");
    if (config.contains("bos_token") && config["bos_token"].is_string()) result.bos_token = config["bos_token"];
    const auto& tmpl = config.contains("chat_template") ? config["chat_template"] : nlohmann::ordered_json();
    if (tmpl.is_string()) {
      result.source = tmpl.get<std::string>();
    } else if (tmpl.is_array()) {
      // Named templates, as transformers picks them: "tool_use" when tools are given, else "default".
      for (const auto& entry : tmpl) {
        if (!entry.is_object() || !entry.contains("name") || !entry.contains("template")) continue;
        const auto name = entry["name"].get<std::string>();
        if ((with_tools && name == "tool_use") || (name == "default" && result.source.empty())) {
          result.source = entry["template"].get<std::string>();
        }
      }
    }
  }
  if (result.source.empty()) result.source = official_llama31_template();
  return result;
}

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
  const auto tmpl = folder_template(dir, !tools.is_null());
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
