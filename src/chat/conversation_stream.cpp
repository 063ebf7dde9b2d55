// Streaming display of assistant answers with tool calls.
#include "chat/conversation_stream.h"

namespace llama31::chat {

AssistantDisplayEnd AssistantDisplay::finish(bool ended_with_eom) {
  if (ended_with_eom) parser_.feed(kEndOfMessage);
  AssistantDisplayEnd end;
  end.message = parser_.finish();
  end.text = parser_.remaining_content();
  for (const auto& call : end.message.tool_calls) end.call_lines.push_back(tool_call_line(call));
  return end;
}

std::string tool_call_line(const ToolCall& call) {
  nlohmann::ordered_json j;
  j["tool_call"]["id"] = call.id;
  j["tool_call"]["name"] = call.name;
  j["tool_call"]["arguments"] = call.arguments;
  return j.dump();
}

nlohmann::json tool_result_from_line(const std::string& line) {
  auto parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || line.find_first_not_of(" \t") == std::string::npos) return line;
  return parsed;
}

}  // namespace llama31::chat
