// llama31 guard: Llama Guard 3 moderation of a conversation's last turn, printed as JSON.
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "chat/folder_template.h"
#include "chat/llama_guard.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "util/error.h"

namespace llama31::cli {

namespace {

struct GuardOptions {
  ModelOptions model;
  std::string messages_file;
  std::string categories;
  int max_tokens = 20;
  bool print_prompt = false;
};

// The folder's own template when it is a Llama Guard one (it lists the unsafe content categories);
// otherwise the built-in Llama Guard 3 prompt.
std::string guard_prompt(const std::filesystem::path& dir, const nlohmann::ordered_json& messages,
                         const std::vector<std::string>& categories) {
  const auto tmpl = template_from_tokenizer_config(read_tokenizer_config(dir), false);
  if (categories.empty() && tmpl.source.find("UNSAFE CONTENT CATEGORIES") != std::string::npos) {
    chat::llama_guard3_prompt(messages);  // validates roles and contents
    return render_chat(tmpl.source, messages, nullptr, true, nlohmann::ordered_json::object(), tmpl.bos_token);
  }
  return chat::llama_guard3_prompt(messages, categories);
}

int run_guard(const GuardOptions& o) {
  const auto messages = read_json_file(o.messages_file, "--messages");
  std::vector<std::string> categories;
  std::stringstream list(o.categories);
  for (std::string code; std::getline(list, code, ',');) {
    if (!code.empty()) categories.push_back(code);
  }
  if (o.print_prompt) {
    const auto prompt = guard_prompt(resolve_model_dir(o.model), messages, categories);
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    return 0;
  }
  auto model = load_model(o.model);
  const auto prompt_text = guard_prompt(model->folder().dir, messages, categories);
  GenerationRequest request;
  request.prompt = model->tokenizer().encode(prompt_text, /*parse_special=*/true);
  request.max_new_tokens = o.max_tokens;
  request.stop_ids = model->stop_ids();
  request.sampling.temperature = 0;
  KvCache cache(model->config(), context_size(o.model, model->config(),
                                              static_cast<long long>(request.prompt.size()) + o.max_tokens));
  const auto result = generate(*model, cache, request);
  const auto verdict = chat::parse_llama_guard_output(result.text);
  std::printf("%s\n", chat::guard_verdict_json(verdict).dump().c_str());
  std::fflush(stdout);
  return verdict.safe ? 0 : 2;
}

}  // namespace

void add_guard_command(CLI::App& app) {
  auto o = std::make_shared<GuardOptions>();
  auto* sub = app.add_subcommand("guard", "Llama Guard 3 moderation of a conversation's last turn (JSON verdict)");
  add_model_options(*sub, o->model);
  sub->add_option("--messages", o->messages_file, "JSON file: an array of OpenAI-style user/assistant messages")
      ->required();
  sub->add_option("--categories", o->categories, "Comma-separated category codes to check (default: S1-S14)");
  sub->add_option("-n,--max-tokens", o->max_tokens, "Tokens to generate at most")->capture_default_str()
      ->check(whole_number_at_least(1));
  sub->add_flag("--print-prompt", o->print_prompt, "Print the rendered prompt instead of running the model");
  sub->callback([o] {
    const int code = run_guard(*o);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace llama31::cli
