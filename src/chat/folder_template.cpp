#include "chat/folder_template.h"

#include <fstream>
#include <sstream>

#include "chat/chat_template.h"
#include "util/error.h"

namespace llama31 {

nlohmann::ordered_json read_json_file(const std::filesystem::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open {}", what, path.string());
  std::stringstream text;
  text << in.rdbuf();
  try {
    return nlohmann::ordered_json::parse(text.str());
  } catch (const nlohmann::ordered_json::parse_error& e) {
    fail("{} {}: invalid JSON: {}", what, path.string(), e.what());
  }
}

FolderTemplate template_from_tokenizer_config(const nlohmann::json& config, bool with_tools) {
  FolderTemplate result;
  if (config.is_object()) {
    if (config.contains("bos_token") && config["bos_token"].is_string()) result.bos_token = config["bos_token"];
    const auto& tmpl = config.contains("chat_template") ? config["chat_template"] : nlohmann::json();
    if (tmpl.is_string()) {
      result.source = tmpl.get<std::string>();
    } else if (tmpl.is_array()) {
      // Named templates, as transformers picks them: "tool_use" when tools are given, else "default".
      for (const auto& entry : tmpl) {
        if (!entry.is_object() || !entry.contains("name") || !entry.contains("template")) continue;
        if (!entry["name"].is_string() || !entry["template"].is_string()) continue;
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

FolderTemplate folder_template(const std::filesystem::path& dir, bool with_tools) {
  const auto config_path = dir / "tokenizer_config.json";
  if (!std::filesystem::exists(config_path)) return template_from_tokenizer_config(nlohmann::json::object(), with_tools);
  std::ifstream in(config_path, std::ios::binary);
  if (!in) fail("tokenizer_config.json: cannot open {}", config_path.string());
  try {
    return template_from_tokenizer_config(nlohmann::json::parse(in), with_tools);
  } catch (const nlohmann::json::parse_error& e) {
    fail("tokenizer_config.json {}: invalid JSON: {}", config_path.string(), e.what());
  }
}

}  // namespace llama31
