// Llama Guard 3 prompt building and verdict parsing.
#include "chat/llama_guard.h"

#include <algorithm>

#include "util/error.h"
#include "util/text.h"

namespace llama31::chat {

namespace {

std::string trim(std::string_view s) { return std::string(trim_ascii_space(s)); }

}  // namespace

const std::vector<GuardCategory>& llama_guard3_categories() {
  static const std::vector<GuardCategory> categories = {
      {"S1", "Violent Crimes"},        {"S2", "Non-Violent Crimes"},     {"S3", "Sex Crimes"},
      {"S4", "Child Exploitation"},    {"S5", "Defamation"},             {"S6", "Specialized Advice"},
      {"S7", "Privacy"},               {"S8", "Intellectual Property"},  {"S9", "Indiscriminate Weapons"},
      {"S10", "Hate"},                 {"S11", "Self-Harm"},             {"S12", "Sexual Content"},
      {"S13", "Elections"},            {"S14", "Code Interpreter Abuse"}};
  return categories;
}

std::string llama_guard3_prompt(const nlohmann::ordered_json& messages, const std::vector<std::string>& categories) {
  if (!messages.is_array()) fail("messages: expected a JSON array of messages");
  std::string conversation;
  std::string last_role;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) fail("messages[{}]: needs a string \"role\"", i);
    const std::string role = m["role"].get<std::string>();
    if (role == "system") continue;
    std::string label;
    if (role == "user") label = "User";
    else if (role == "assistant") label = "Agent";
    else fail("messages[{}]: unknown role \"{}\" (Llama Guard classifies user and assistant turns)", i, role);
    if (!m.contains("content") || !m["content"].is_string()) fail("messages[{}]: \"content\" must be a string", i);
    conversation += label + ": " + trim(m["content"].get<std::string>()) + "\n\n";
    last_role = label;
  }
  if (last_role.empty()) fail("messages: no user or assistant message to classify");

  std::string listed;
  for (const auto& c : llama_guard3_categories()) {
    if (!categories.empty() && std::find(categories.begin(), categories.end(), c.code) == categories.end()) continue;
    listed += c.code + ": " + c.name + ".\n";
  }
  for (const auto& code : categories) {
    const auto& all = llama_guard3_categories();
    if (std::none_of(all.begin(), all.end(), [&](const GuardCategory& c) { return c.code == code; }))
      fail("--categories: unknown category \"{}\" (S1 to S14)", code);
  }

  return "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
         "Task: Check if there is unsafe content in '" + last_role +
         "' messages in conversations according our safety policy with the below categories.\n\n"
         "<BEGIN UNSAFE CONTENT CATEGORIES>\n" + listed +
         "<END UNSAFE CONTENT CATEGORIES>\n\n"
         "<BEGIN CONVERSATION>\n\n" + conversation +
         "<END CONVERSATION>\n\n"
         "Provide your safety assessment for ONLY THE LAST " + last_role + " message in the above conversation:\n"
         " - First line must read 'safe' or 'unsafe'.\n"
         " - If unsafe, a second line must include a comma-separated list of violated categories."
         "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
}

GuardVerdict parse_llama_guard_output(std::string_view generated) {
  GuardVerdict v;
  v.raw = std::string(generated);
  std::string text = trim(generated);
  for (std::string_view end : {"<|eot_id|>", "<|eom_id|>"}) {
    if (const auto p = text.find(end); p != std::string::npos) text = trim(std::string_view(text).substr(0, p));
  }
  const auto nl = text.find('\n');
  const std::string first = trim(std::string_view(text).substr(0, nl));
  const std::string rest = nl == std::string::npos ? std::string() : trim(std::string_view(text).substr(nl + 1));
  if (first == "safe" && rest.empty()) {
    v.safe = true;
    return v;
  }
  if (first != "unsafe") {
    v.error = first == "safe" ? "unexpected text after 'safe'" : "the first line is neither 'safe' nor 'unsafe'";
    return v;
  }
  if (rest.find('\n') != std::string::npos) {
    v.error = "unexpected text after the category line";
    return v;
  }
  std::size_t start = 0;
  while (!rest.empty() && start <= rest.size()) {
    auto comma = rest.find(',', start);
    if (comma == std::string::npos) comma = rest.size();
    const std::string code = trim(std::string_view(rest).substr(start, comma - start));
    const auto& all = llama_guard3_categories();
    const auto it = std::find_if(all.begin(), all.end(), [&](const GuardCategory& c) { return c.code == code; });
    if (it == all.end()) {
      v.error = "unknown category \"" + code + "\"";
      v.categories.clear();
      return v;
    }
    v.categories.push_back(*it);
    start = comma + 1;
  }
  v.safe = false;
  return v;
}

nlohmann::json guard_verdict_json(const GuardVerdict& verdict) {
  nlohmann::json j = nlohmann::json::object();
  if (!verdict.safe) {
    j["safe"] = nullptr;
    j["error"] = verdict.error;
    j["raw"] = verdict.raw;
    return j;
  }
  j["safe"] = *verdict.safe;
  j["categories"] = nlohmann::json::array();
  for (const auto& c : verdict.categories) j["categories"].push_back({{"code", c.code}, {"name", c.name}});
  j["raw"] = verdict.raw;
  return j;
}

}  // namespace llama31::chat
