// The chat template a model folder asks for: tokenizer_config.json's chat_template (a string, or named
// templates as transformers picks them), else the official Llama 3.1 Instruct template.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace llama31 {

struct FolderTemplate {
  std::string source;
  std::string bos_token = "<|begin_of_text|>";
};

// The template tokenizer_config.json's content asks for (an empty object: the official one). with_tools
// picks the "tool_use" named template when there is one; otherwise "default".
FolderTemplate template_from_tokenizer_config(const nlohmann::json& config, bool with_tools);

// The same from dir/tokenizer_config.json. Errors (llama31::Error): present but not valid JSON.
FolderTemplate folder_template(const std::filesystem::path& dir, bool with_tools);

// Reads a JSON file keeping key order; errors name `what` (e.g. "--messages") and the path.
nlohmann::ordered_json read_json_file(const std::filesystem::path& path, const char* what);

}  // namespace llama31
