// Llama Guard 3 moderation: the classification prompt (its model card's format, hazard categories S1-S14)
// and parsing of the model's verdict ("safe", or "unsafe" then a line of comma-separated codes).
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llama31::chat {

struct GuardCategory {
  std::string code;  // "S1"
  std::string name;  // "Violent Crimes"
};

// The 14 hazard categories of Llama Guard 3 (S1 Violent Crimes ... S14 Code Interpreter Abuse).
const std::vector<GuardCategory>& llama_guard3_categories();

// The built-in Llama Guard 3 prompt for an OpenAI-style messages array (user/assistant turns; system
// messages are skipped). It classifies the last message: the 'User' role when it is from the user, the
// 'Agent' role when from the assistant. `categories` picks a subset by code (empty: all 14).
// Errors (llama31::Error): no messages, an unknown role, content that is not a string.
std::string llama_guard3_prompt(const nlohmann::ordered_json& messages,
                                const std::vector<std::string>& categories = {});

struct GuardVerdict {
  std::optional<bool> safe;  // nullopt: the output could not be parsed
  std::vector<GuardCategory> categories;
  std::string raw;
  std::string error;
};

// Parses a generation: "safe", or "unsafe" with an optional second line "S1,S10" (spaces tolerated,
// leading/trailing whitespace ignored). Anything else gives safe = nullopt and an error.
GuardVerdict parse_llama_guard_output(std::string_view generated);

// {"safe": true/false, "categories": [{"code","name"}], "raw": ...} or {"safe": null, "error": ..., "raw": ...}.
nlohmann::json guard_verdict_json(const GuardVerdict& verdict);

}  // namespace llama31::chat
