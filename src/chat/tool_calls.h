// Turning Llama 3.1 Instruct generations into OpenAI-style tool calls, whole or while streaming.
//
// Formats (Meta's Llama 3.1 prompt-format documentation):
//   built-in tools   <|python_tag|>brave_search.call(query="...")<|eom_id|>   (also wolfram_alpha)
//   code interpreter <|python_tag|>import math\nprint(math.pi)<|eom_id|>
//   custom tools     {"name": "fn", "parameters": {...}}<|eot_id|>  ("arguments" accepted for "parameters",
//                    optionally preceded by <|python_tag|>, several separated by ';' or newlines)
//
// Decision rules (documented behaviour):
//   - The text is cut at the first "<|eom_id|>" or "<|eot_id|>"; ends_with_eom says which one ended it.
//   - Like vLLM's llama3_json parser, a message is a custom call only when it starts (after whitespace) with '{'
//     or when the JSON follows <|python_tag|>. Text before <|python_tag|> is content, kept verbatim.
//   - Without <|python_tag|>, JSON that is not call-shaped (no "name" and no "parameters"/"arguments") is plain
//     text with no error; JSON that parses but is call-shaped and broken (name missing, parameters not an
//     object, text after the calls) and a '{' message that is not valid JSON but mentions "name" are errors.
//   - After <|python_tag|>: `<builtin>.call(...)` for a known built-in name is a built-in call (keyword
//     arguments, or one positional string taken as "query"), text starting with '{' must be custom-call JSON,
//     anything else (including `other.call(...)`) is code_interpreter code with arguments {"code": ...}.
//   - A custom call's "parameters"/"arguments" may be an object, null (= {}) or a string holding a JSON object.
//   - When ToolCallParseOptions::custom_tool_names is non-empty, a custom call naming a function not in it (and not a
//     built-in) is not a call: the message stays text and errors names the unknown function. When it is empty,
//     any name is accepted (vLLM's behaviour: it does not check names).
//   - On any error no tool call is returned (all or nothing): content holds the raw text (without the
//     <|python_tag|> marker and terminator) and errors says what was wrong. Parsing never throws; JSON or
//     Python values nested deeper than 128 / 64 levels are refused (an error, or plain text if not call-shaped).
//   - Code for code_interpreter is the text after <|python_tag|> with surrounding whitespace trimmed.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace llama31::chat {

inline constexpr std::string_view kPythonTag = "<|python_tag|>";
inline constexpr std::string_view kEndOfMessage = "<|eom_id|>";
inline constexpr std::string_view kEndOfTurn = "<|eot_id|>";

struct ToolCall {
  std::string id;              // "call_" + unique suffix
  std::string name;            // "brave_search", "wolfram_alpha", "code_interpreter" or the custom function
  nlohmann::json arguments;    // always an object
  std::string arguments_json;  // arguments as compact JSON text, as OpenAI sends it
  std::string kind;            // "builtin", "code_interpreter" or "custom"
  bool operator==(const ToolCall&) const = default;
};

struct ParsedAssistantMessage {
  std::string content;
  std::vector<ToolCall> tool_calls;
  std::vector<std::string> errors;
  bool ends_with_eom = false;
  bool operator==(const ParsedAssistantMessage&) const = default;
};

struct ToolCallParseOptions {
  // Custom function names the request defined; empty accepts any name.
  std::vector<std::string> custom_tool_names;
  // Built-in tools called as `<name>.call(...)` after <|python_tag|>.
  std::vector<std::string> builtin_tool_names = {"brave_search", "wolfram_alpha"};
  // Ids "call_<seed + index>" (zero-padded) instead of random suffixes, for tests and reproducible output.
  bool deterministic_ids = false;
  std::uint64_t id_seed = 0;
};

// Parses a whole generation (special-token texts included). Never throws on bad input.
ParsedAssistantMessage parse_assistant_message(std::string_view generated,
                                               const ToolCallParseOptions& options = {});

// Parses Python keyword arguments `a="x", b=2, c=True, d=None` into a JSON object; throws llama31::Error.
nlohmann::json parse_python_keyword_arguments(std::string_view text);

// Streaming: feed text pieces as an incremental detokenizer produces them. feed() returns the content that is
// now certain to be plain text; text that may be a tool call is held back. finish() returns the same message
// parse_assistant_message(all pieces) gives (ids equal when deterministic), and remaining_content() then gives
// the part of its content not yet returned by feed() (the emitted deltas are always a prefix of the content).
class ToolCallStreamParser {
 public:
  explicit ToolCallStreamParser(ToolCallParseOptions options = {});
  std::string feed(std::string_view piece);
  ParsedAssistantMessage finish();
  std::string remaining_content() const;
  bool holding_possible_tool_call() const { return mode_ == Mode::kHolding; }

 private:
  enum class Mode { kUndecided, kText, kHolding, kEnded };
  ToolCallParseOptions options_;
  std::string buffer_;
  std::size_t emitted_ = 0;
  Mode mode_ = Mode::kUndecided;
  bool finished_ = false;
  ParsedAssistantMessage result_;
};

// The OpenAI-style assistant message: {"role":"assistant","content":...,"tool_calls":[{id,type,function}]}.
nlohmann::json to_openai_assistant_message(const ParsedAssistantMessage& message);

// A tool result as the message that continues the conversation after <|eom_id|>: {"role":"ipython",...}.
// Strings are sent as they are; other JSON values as compact JSON text.
nlohmann::json ipython_tool_result_message(const nlohmann::json& result);

}  // namespace llama31::chat
