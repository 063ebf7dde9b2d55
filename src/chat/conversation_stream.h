// What the chat command shows while an assistant answer streams: plain text at once, possible tool
// calls held back, then each tool call as one JSON line {"tool_call": {"id","name","arguments"}}.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "chat/tool_calls.h"

namespace llama31::chat {

struct AssistantDisplayEnd {
  std::string text;                     // content still to print (held text that was not a tool call)
  std::vector<std::string> call_lines;  // one compact JSON line per tool call, no newline
  ParsedAssistantMessage message;       // the whole parsed answer
};

class AssistantDisplay {
 public:
  explicit AssistantDisplay(ToolCallParseOptions options = {}) : parser_(std::move(options)) {}
  // A generated piece (special-token texts included); returns the text to print now.
  std::string feed(std::string_view piece) { return parser_.feed(piece); }
  // Ends the answer; ended_with_eom: generation stopped on <|eom_id|> (the model waits for a tool result).
  AssistantDisplayEnd finish(bool ended_with_eom);

 private:
  ToolCallStreamParser parser_;
};

// {"tool_call": {"id": ..., "name": ..., "arguments": {...}}} as compact JSON.
std::string tool_call_line(const ToolCall& call);

// The tool's answer as the user typed it: JSON when the line parses as JSON, else the text itself.
nlohmann::json tool_result_from_line(const std::string& line);

}  // namespace llama31::chat
