#include "chat/chat_template.h"

#include "chat/jinja/template.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <sstream>

namespace llama31 {
namespace {

bool is_valid_utf8(const std::string& text) { return !utf8::first_invalid_byte(text).has_value(); }

void check_utf8(const nlohmann::ordered_json& value, const std::string& where) {
  if (value.is_string()) {
    if (!is_valid_utf8(value.get_ref<const std::string&>())) fail("chat: {} is not valid UTF-8", where);
  } else if (value.is_array()) {
    for (std::size_t i = 0; i < value.size(); ++i) check_utf8(value[i], fmt::format("{}[{}]", where, i));
  } else if (value.is_object()) {
    for (auto it = value.begin(); it != value.end(); ++it) {
      if (!is_valid_utf8(it.key())) fail("chat: a key in {} is not valid UTF-8", where);
      check_utf8(it.value(), fmt::format("{}.{}", where, it.key()));
    }
  }
}

void validate_messages(const nlohmann::ordered_json& messages) {
  if (!messages.is_array()) fail("chat: messages must be an array, got {}", messages.type_name());
  static const std::array<std::string, 5> kRoles = {"system", "user", "assistant", "ipython", "tool"};
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const auto& message = messages[i];
    if (!message.is_object()) fail("chat: messages[{}] must be an object, got {}", i, message.type_name());
    auto role = message.find("role");
    if (role == message.end() || !role->is_string()) fail("chat: messages[{}].role is missing or not a string", i);
    const auto& name = role->get_ref<const std::string&>();
    if (std::find(kRoles.begin(), kRoles.end(), name) == kRoles.end())
      fail("chat: messages[{}].role '{}' is not one of system, user, assistant, ipython, tool", i,
           is_valid_utf8(name) ? name : std::string("<invalid UTF-8>"));
  }
  check_utf8(messages, "messages");
}

}  // namespace

std::string render_chat(const std::string& template_source, const nlohmann::ordered_json& messages,
                        const nlohmann::ordered_json& tools, bool add_generation_prompt,
                        const nlohmann::ordered_json& extra, std::string bos_token) {
  validate_messages(messages);
  if (!tools.is_null() && !tools.is_array()) fail("chat: tools must be an array, got {}", tools.type_name());
  check_utf8(tools, "tools");
  if (!extra.is_null() && !extra.is_object()) fail("chat: extra template variables must be an object, got {}", extra.type_name());
  check_utf8(extra, "extra");
  if (!is_valid_utf8(bos_token)) fail("chat: bos_token is not valid UTF-8");
  if (!is_valid_utf8(template_source)) fail("chat: the chat template is not valid UTF-8");

  nlohmann::ordered_json context = extra.is_object() ? extra : nlohmann::ordered_json::object();
  context["messages"] = messages;
  if (!tools.is_null()) context["tools"] = tools;
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = std::move(bos_token);
  auto chat_template = JinjaTemplate::parse(template_source, "chat_template");
  return chat_template.render(context);
}

std::string official_llama31_template() {
  static const std::string cached = [] {
    std::string path = std::string(LLAMA31_DATA_DIR) + "/llama-3.1-tokenizer/tokenizer_config.json";
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("chat: cannot open {}", path);
    std::stringstream buffer;
    buffer << in.rdbuf();
    nlohmann::json config;
    try {
      config = nlohmann::json::parse(buffer.str());
    } catch (const nlohmann::json::exception& error) {
      fail("chat: {} is not valid JSON: {}", path, error.what());
    }
    auto found = config.find("chat_template");
    if (found == config.end() || !found->is_string()) fail("chat: {} has no string field chat_template", path);
    return found->get<std::string>();
  }();
  return cached;
}

}  // namespace llama31
