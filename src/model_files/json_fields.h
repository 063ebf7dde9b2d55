// Typed, checked access to optional fields of Hugging Face JSON files (config.json and friends).
// A field that is absent or null reads as nullopt; a field of the wrong type is an Error naming
// the source and the field.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace llama31::json_fields {

std::optional<int> optional_int(const nlohmann::json& j, const char* key, const std::string& source);
std::optional<double> optional_double(const nlohmann::json& j, const char* key, const std::string& source);
std::optional<bool> optional_bool(const nlohmann::json& j, const char* key, const std::string& source);
std::optional<std::string> optional_string(const nlohmann::json& j, const char* key, const std::string& source);
// A token id given as one number or a list of numbers (eos_token_id); absent or null is empty.
std::vector<int> token_id_list(const nlohmann::json& j, const char* key, const std::string& source);

// Writes j indented by 2 with a final newline; throws naming the path when it cannot.
void write_json_file(const std::filesystem::path& path, const nlohmann::json& j);

}  // namespace llama31::json_fields
