// Llama 3.1 tool-call parsing: built-in `<tool>.call(...)`, code_interpreter code and custom JSON calls.
#include "chat/tool_calls.h"

#include "util/error.h"
#include "util/text.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <optional>
#include <random>

namespace llama31::chat {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 3> kMarkers = {kPythonTag, kEndOfMessage, kEndOfTurn};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::size_t first_non_space(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && is_space(text[i])) ++i;
  return i;
}

bool contains(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string compact_json(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

void append_utf8(std::string& out, std::uint32_t code_point) {
  if (code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) code_point = 0xFFFD;
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

// Reads Python literal syntax: keyword arguments whose values are strings, numbers, True/False/None, lists and
// dicts of those. Throws llama31::Error naming the position and what was expected.
class PythonLiteralReader {
 public:
  explicit PythonLiteralReader(std::string_view text) : text_(text) {}

  std::size_t position() const { return pos_; }
  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }
  void skip_spaces() {
    while (!at_end() && is_space(text_[pos_])) ++pos_;
  }
  void skip_separators() {
    while (!at_end() && (is_space(text_[pos_]) || text_[pos_] == ';')) ++pos_;
  }

  std::string read_identifier() {
    const std::size_t start = pos_;
    while (!at_end() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) != 0 || text_[pos_] == '_')) ++pos_;
    if (start == pos_) fail_here("expected an identifier");
    return std::string(text_.substr(start, pos_ - start));
  }

  void expect(char c) {
    skip_spaces();
    if (peek() != c) fail_here(fmt::format("expected '{}'", c));
    ++pos_;
  }

  // Keyword arguments up to (and consuming) `closing`, or to the end of text when closing is '\0'.
  json read_keyword_arguments(char closing) {
    json arguments = json::object();
    for (;;) {
      skip_spaces();
      if (closing == '\0' ? at_end() : peek() == closing) break;
      if (at_end()) fail_here(fmt::format("missing closing '{}'", closing));
      const std::string key = read_identifier();
      if (arguments.contains(key)) fail_here(fmt::format("keyword argument '{}' repeated", key));
      expect('=');
      arguments[key] = read_value();
      skip_spaces();
      if (peek() == ',') {
        ++pos_;
      } else if (!(closing == '\0' ? at_end() : peek() == closing)) {
        fail_here(closing == '\0' ? std::string("expected ',' or the end") : fmt::format("expected ',' or '{}'", closing));
      }
    }
    if (closing != '\0') ++pos_;
    return arguments;
  }

  json read_value() {
    skip_spaces();
    if (depth_ > kMaxNesting) fail_here(fmt::format("values nested deeper than {}", kMaxNesting));
    const char c = peek();
    if (c == '"' || c == '\'') return read_string();
    if (c == '[' || c == '(') return read_sequence(c == '[' ? ']' : ')');
    if (c == '{') return read_dict();
    if (c == '-' || c == '+' || c == '.' || std::isdigit(static_cast<unsigned char>(c)) != 0) return read_number();
    if (std::isalpha(static_cast<unsigned char>(c)) != 0) {
      const std::size_t start = pos_;
      const std::string word = read_identifier();
      if (word == "True") return true;
      if (word == "False") return false;
      if (word == "None") return nullptr;
      pos_ = start;
      fail_here(fmt::format("unsupported value '{}'", word));
    }
    fail_here(at_end() ? std::string("value missing at the end") : fmt::format("unexpected character '{}'", c));
  }

 private:
  static constexpr int kMaxNesting = 64;
  struct NestingGuard {
    explicit NestingGuard(int& depth) : depth_ref(depth) { ++depth_ref; }
    ~NestingGuard() { --depth_ref; }
    NestingGuard(const NestingGuard&) = delete;
    NestingGuard& operator=(const NestingGuard&) = delete;
    int& depth_ref;
  };

  [[noreturn]] void fail_here(const std::string& what) const {
    fail("python call arguments: {} at offset {} in '{}'", what, pos_, text_.substr(0, 200));
  }

  json read_sequence(char closing) {
    ++pos_;
    const NestingGuard guard(depth_);
    json items = json::array();
    for (;;) {
      skip_spaces();
      if (peek() == closing) break;
      if (at_end()) fail_here(fmt::format("missing closing '{}'", closing));
      items.push_back(read_value());
      skip_spaces();
      if (peek() == ',') ++pos_;
      else if (peek() != closing) fail_here(fmt::format("expected ',' or '{}'", closing));
    }
    ++pos_;
    return items;
  }

  json read_dict() {
    ++pos_;
    const NestingGuard guard(depth_);
    json object = json::object();
    for (;;) {
      skip_spaces();
      if (peek() == '}') break;
      if (peek() != '"' && peek() != '\'') fail_here("expected a string dict key");
      const std::string key = read_string();
      expect(':');
      object[key] = read_value();
      skip_spaces();
      if (peek() == ',') ++pos_;
      else if (peek() != '}') fail_here("expected ',' or '}'");
    }
    ++pos_;
    return object;
  }

  json read_number() {
    const std::size_t start = pos_;
    if (peek() == '+' || peek() == '-') ++pos_;
    bool is_float = false;
    while (!at_end()) {
      const char c = text_[pos_];
      if (std::isdigit(static_cast<unsigned char>(c)) != 0) {
        ++pos_;
      } else if (c == '.' || c == 'e' || c == 'E') {
        is_float = true;
        ++pos_;
        if ((c == 'e' || c == 'E') && (peek() == '+' || peek() == '-')) ++pos_;
      } else {
        break;
      }
    }
    std::string_view token = text_.substr(start, pos_ - start);
    if (!token.empty() && token.front() == '+') token.remove_prefix(1);
    const char* const first = token.data();
    const char* const last = token.data() + token.size();
    if (!is_float) {
      std::int64_t integer = 0;
      const auto [end, error] = std::from_chars(first, last, integer);
      if (error == std::errc() && end == last) return integer;
    }
    double number = 0.0;
    const auto [end, error] = std::from_chars(first, last, number);
    if (error != std::errc() || end != last) {
      pos_ = start;
      fail_here(fmt::format("bad number '{}'", token));
    }
    return number;
  }

  std::uint32_t read_hex(std::size_t digits) {
    if (pos_ + digits > text_.size()) fail_here("truncated escape");
    std::uint32_t value = 0;
    const auto [end, error] = std::from_chars(text_.data() + pos_, text_.data() + pos_ + digits, value, 16);
    if (error != std::errc() || end != text_.data() + pos_ + digits) fail_here("bad hex escape");
    pos_ += digits;
    return value;
  }

  std::string read_string() {
    const char quote = text_[pos_++];
    std::string out;
    for (;;) {
      if (at_end()) fail_here("unterminated string");
      const char c = text_[pos_++];
      if (c == quote) return out;
      if (c == '\n') fail_here("unterminated string (newline)");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_end()) fail_here("unterminated string");
      const char escaped = text_[pos_++];
      switch (escaped) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case '0': out += '\0'; break;
        case '\\': case '\'': case '"': out += escaped; break;
        case '\n': break;  // line continuation
        case 'x': append_utf8(out, read_hex(2)); break;
        case 'U': append_utf8(out, read_hex(8)); break;
        case 'u': {
          std::uint32_t code_point = read_hex(4);
          if (code_point >= 0xD800 && code_point <= 0xDBFF && text_.substr(pos_, 2) == "\\u") {
            const std::size_t before = pos_;
            pos_ += 2;
            const std::uint32_t low = read_hex(4);
            if (low >= 0xDC00 && low <= 0xDFFF) code_point = 0x10000 + ((code_point - 0xD800) << 10) + (low - 0xDC00);
            else pos_ = before;
          }
          append_utf8(out, code_point);
          break;
        }
        default: out += '\\'; out += escaped; break;  // Python keeps unknown escapes as written
      }
    }
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  int depth_ = 0;
};

// JSON nested deeper than this is refused before nlohmann::json (whose copies recurse) sees it.
constexpr int kMaxJsonNesting = 128;

// Where the JSON object starting at text[start] == '{' ends (one past its '}'), or nullopt when unbalanced;
// deepest_nesting receives the deepest bracket nesting met.
std::optional<std::size_t> end_of_json_object(std::string_view text, std::size_t start, int& deepest_nesting) {
  int depth = 0;
  deepest_nesting = 0;
  bool in_string = false;
  for (std::size_t i = start; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest_nesting = std::max(deepest_nesting, ++depth);
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::nullopt;
}

struct CallsOutcome {
  std::vector<ToolCall> calls;
  std::vector<std::string> errors;
  bool plain_text = false;  // not a call attempt at all
};

ToolCall make_call(std::string name, json arguments, std::string kind) {
  ToolCall call;
  call.name = std::move(name);
  call.arguments_json = compact_json(arguments);
  call.arguments = std::move(arguments);
  call.kind = std::move(kind);
  return call;
}

// A sequence of {"name":..., "parameters"|"arguments":...} objects separated by ';' or whitespace.
CallsOutcome parse_json_calls(std::string_view text, bool after_python_tag) {
  CallsOutcome outcome;
  std::size_t pos = 0;
  for (;;) {
    while (pos < text.size() && (is_space(text[pos]) || text[pos] == ';')) ++pos;
    if (pos >= text.size()) break;
    const bool first = outcome.calls.empty();
    if (text[pos] != '{') {
      outcome.errors.push_back(fmt::format("tool call JSON: unexpected text after the calls: '{}'", text.substr(pos, 80)));
      return outcome;
    }
    int deepest_nesting = 0;
    const std::optional<std::size_t> end = end_of_json_object(text, pos, deepest_nesting);
    const std::string_view object_text = text.substr(pos, end ? *end - pos : std::string_view::npos);
    const bool mentions_name = object_text.find("\"name\"") != std::string_view::npos;
    if (deepest_nesting > kMaxJsonNesting) {
      if (first && !after_python_tag && !mentions_name) {
        outcome.plain_text = true;
        return outcome;
      }
      outcome.errors.push_back(fmt::format("tool call JSON is nested deeper than {} levels", kMaxJsonNesting));
      return outcome;
    }
    const json object = end ? json::parse(object_text, nullptr, false) : json(json::value_t::discarded);
    if (object.is_discarded() || !object.is_object()) {
      if (first && !after_python_tag && !mentions_name) {
        outcome.plain_text = true;
      } else {
        outcome.errors.push_back(fmt::format("tool call JSON is {}: '{}'", end ? "malformed" : "truncated",
                                             object_text.substr(0, 120)));
      }
      return outcome;
    }
    const bool has_name = object.contains("name");
    const char* const parameters_key = object.contains("parameters") ? "parameters" : "arguments";
    const bool has_parameters = object.contains(parameters_key);
    if (first && !after_python_tag && !has_name && !has_parameters) {
      outcome.plain_text = true;
      return outcome;
    }
    if (!has_name || !object["name"].is_string() || object["name"].get<std::string>().empty()) {
      outcome.errors.push_back(fmt::format("tool call JSON has no \"name\" string: '{}'", compact_json(object).substr(0, 120)));
      return outcome;
    }
    json arguments = has_parameters ? object[parameters_key] : json::object();
    if (arguments.is_string()) {  // OpenAI style: arguments as JSON text
      json decoded = json::parse(arguments.get<std::string>(), nullptr, false);
      if (!decoded.is_discarded()) arguments = std::move(decoded);
    }
    if (arguments.is_null()) arguments = json::object();
    if (!arguments.is_object()) {
      outcome.errors.push_back(fmt::format("tool call '{}': \"{}\" is not an object", object["name"].get<std::string>(),
                                           parameters_key));
      return outcome;
    }
    outcome.calls.push_back(make_call(object["name"].get<std::string>(), std::move(arguments), "custom"));
    pos = *end;
  }
  return outcome;
}

// `<builtin>.call(k=v, ...)` calls (one or more, separated by ';' or newlines), or nullopt when the text does
// not start with a known built-in's `.call(`.
std::optional<CallsOutcome> parse_builtin_calls(std::string_view text, const ToolCallParseOptions& options) {
  PythonLiteralReader reader(text);
  CallsOutcome outcome;
  try {
    for (;;) {
      reader.skip_separators();
      if (reader.at_end()) break;
      const std::size_t start = reader.position();
      std::string name;
      try {
        name = reader.read_identifier();
        if (text.substr(reader.position(), 6) != ".call(") throw Error("not a call");
      } catch (const Error&) {
        if (outcome.calls.empty()) return std::nullopt;
        fail("unexpected text after the built-in call: '{}'", text.substr(start, 80));
      }
      if (!contains(options.builtin_tool_names, name)) {
        if (outcome.calls.empty()) return std::nullopt;
        fail("'{}' is not a built-in tool", name);
      }
      reader.expect('.');
      reader.read_identifier();
      reader.expect('(');
      reader.skip_spaces();
      json arguments;
      if (reader.peek() == '"' || reader.peek() == '\'') {  // brave_search.call("q"): the one positional is the query
        json query = reader.read_value();
        reader.expect(')');
        arguments = json{{"query", std::move(query)}};
      } else {
        arguments = reader.read_keyword_arguments(')');
      }
      outcome.calls.push_back(make_call(std::move(name), std::move(arguments), "builtin"));
    }
  } catch (const Error& error) {
    outcome.calls.clear();
    outcome.errors.push_back(fmt::format("built-in tool call: {}", error.what()));
  }
  return outcome;
}

CallsOutcome parse_after_python_tag(std::string_view text, const ToolCallParseOptions& options) {
  const std::string_view code = trim_ascii_space(text);
  if (code.empty()) return CallsOutcome{{}, {"<|python_tag|> is followed by no call"}, false};
  if (std::optional<CallsOutcome> builtin = parse_builtin_calls(code, options)) return std::move(*builtin);
  if (code.front() == '{') return parse_json_calls(code, true);
  CallsOutcome outcome;
  outcome.calls.push_back(make_call("code_interpreter", json{{"code", std::string(code)}}, "code_interpreter"));
  return outcome;
}

std::string random_id_suffix() {
  static constexpr std::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 generator{std::random_device{}()};
  std::uniform_int_distribution<std::size_t> pick(0, kAlphabet.size() - 1);
  std::string suffix(24, 'a');
  for (char& c : suffix) c = kAlphabet[pick(generator)];
  return suffix;
}

// Length of the longest suffix of text that is a proper prefix of a marker, or an incomplete UTF-8 sequence.
std::size_t held_back_suffix(std::string_view text) {
  std::size_t held = 0;
  for (const std::string_view marker : kMarkers) {
    for (std::size_t length = std::min(text.size(), marker.size() - 1); length > held; --length) {
      if (text.substr(text.size() - length) == marker.substr(0, length)) {
        held = length;
        break;
      }
    }
  }
  for (std::size_t back = 1; back <= std::min<std::size_t>(3, text.size()); ++back) {
    const auto byte = static_cast<unsigned char>(text[text.size() - back]);
    if ((byte & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const std::size_t needed = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1;
    if (needed > back) held = std::max(held, back);
    break;
  }
  return held;
}

}  // namespace

json parse_python_keyword_arguments(std::string_view text) {
  PythonLiteralReader reader(text);
  return reader.read_keyword_arguments('\0');
}

ParsedAssistantMessage parse_assistant_message(std::string_view generated, const ToolCallParseOptions& options) {
  ParsedAssistantMessage message;
  const std::size_t eom = generated.find(kEndOfMessage);
  const std::size_t eot = generated.find(kEndOfTurn);
  const std::string_view body = generated.substr(0, std::min(eom, eot));
  message.ends_with_eom = eom != std::string_view::npos && eom < eot;

  const std::size_t tag = body.find(kPythonTag);
  CallsOutcome outcome;
  std::string raw_content;
  if (tag != std::string_view::npos) {
    const std::string_view after = body.substr(tag + kPythonTag.size());
    outcome = parse_after_python_tag(after, options);
    message.content = std::string(body.substr(0, tag));
    raw_content = message.content + std::string(after);
  } else {
    const std::size_t start = first_non_space(body);
    if (start < body.size() && body[start] == '{') outcome = parse_json_calls(body.substr(start), false);
    raw_content = std::string(body);  // content only when no call comes out of it
  }

  if (outcome.errors.empty() && !options.custom_tool_names.empty()) {
    for (const ToolCall& call : outcome.calls) {
      if (call.kind == "custom" && !contains(options.custom_tool_names, call.name) &&
          !contains(options.builtin_tool_names, call.name)) {
        outcome.errors.push_back(fmt::format("call to unknown tool '{}' kept as text (defined tools: {})", call.name,
                                             fmt::join(options.custom_tool_names, ", ")));
      }
    }
  }
  if (!outcome.errors.empty() || outcome.calls.empty()) {
    message.content = raw_content;
    message.errors = std::move(outcome.errors);
    return message;
  }
  message.tool_calls = std::move(outcome.calls);
  for (std::size_t index = 0; index < message.tool_calls.size(); ++index) {
    message.tool_calls[index].id =
        "call_" + (options.deterministic_ids ? fmt::format("{:08d}", options.id_seed + index) : random_id_suffix());
  }
  return message;
}

ToolCallStreamParser::ToolCallStreamParser(ToolCallParseOptions options) : options_(std::move(options)) {}

std::string ToolCallStreamParser::feed(std::string_view piece) {
  if (finished_) fail("ToolCallStreamParser: feed() after finish()");
  buffer_.append(piece);
  if (mode_ == Mode::kUndecided) {
    const std::size_t start = first_non_space(buffer_);
    if (start == buffer_.size()) return {};
    mode_ = buffer_[start] == '{' ? Mode::kHolding : Mode::kText;
  }
  if (mode_ != Mode::kText) return {};
  const std::string_view pending = std::string_view(buffer_).substr(emitted_);
  std::size_t marker_at = std::string_view::npos;
  std::string_view marker_found;
  for (const std::string_view marker : kMarkers) {
    const std::size_t at = pending.find(marker);
    if (at < marker_at) {
      marker_at = at;
      marker_found = marker;
    }
  }
  std::size_t emit = 0;
  if (marker_at != std::string_view::npos) {
    emit = marker_at;
    mode_ = marker_found == kPythonTag ? Mode::kHolding : Mode::kEnded;
  } else {
    emit = pending.size() - held_back_suffix(pending);
  }
  std::string delta(pending.substr(0, emit));
  emitted_ += emit;
  return delta;
}

ParsedAssistantMessage ToolCallStreamParser::finish() {
  if (!finished_) {
    result_ = parse_assistant_message(buffer_, options_);
    finished_ = true;
  }
  return result_;
}

std::string ToolCallStreamParser::remaining_content() const {
  if (!finished_) return {};
  return result_.content.substr(std::min(emitted_, result_.content.size()));
}

json to_openai_assistant_message(const ParsedAssistantMessage& message) {
  json result = {{"role", "assistant"}};
  result["content"] = message.content.empty() && !message.tool_calls.empty() ? json(nullptr) : json(message.content);
  if (!message.tool_calls.empty()) {
    json calls = json::array();
    for (const ToolCall& call : message.tool_calls) {
      calls.push_back({{"id", call.id},
                       {"type", "function"},
                       {"function", {{"name", call.name}, {"arguments", call.arguments_json}}}});
    }
    result["tool_calls"] = std::move(calls);
  }
  return result;
}

json ipython_tool_result_message(const json& result) {
  return {{"role", "ipython"}, {"content", result.is_string() ? result.get<std::string>() : compact_json(result)}};
}

}  // namespace llama31::chat
