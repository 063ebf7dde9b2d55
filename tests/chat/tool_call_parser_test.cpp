// Tool-call parsing of Llama 3.1 generations: whole messages, streamed pieces, malformed input.
#include "chat/tool_calls.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

namespace llama31::chat {
namespace {

using nlohmann::json;

ToolCallParseOptions deterministic() {
  ToolCallParseOptions options;
  options.deterministic_ids = true;
  return options;
}

ParsedAssistantMessage parse(std::string_view text) { return parse_assistant_message(text, deterministic()); }

TEST(ToolCallParser, PlainTextIsContent) {
  const ParsedAssistantMessage message = parse("The capital of France is Paris.<|eot_id|>");
  EXPECT_EQ(message.content, "The capital of France is Paris.");
  EXPECT_TRUE(message.tool_calls.empty());
  EXPECT_TRUE(message.errors.empty());
  EXPECT_FALSE(message.ends_with_eom);
}

TEST(ToolCallParser, BraveSearchBuiltinCall) {
  const ParsedAssistantMessage message =
      parse("<|python_tag|>brave_search.call(query=\"current weather in Menlo Park, California\")<|eom_id|>");
  ASSERT_EQ(message.tool_calls.size(), 1u) << (message.errors.empty() ? "" : message.errors[0]);
  const ToolCall& call = message.tool_calls[0];
  EXPECT_EQ(call.name, "brave_search");
  EXPECT_EQ(call.kind, "builtin");
  EXPECT_EQ(call.arguments, json({{"query", "current weather in Menlo Park, California"}}));
  EXPECT_EQ(call.arguments_json, "{\"query\":\"current weather in Menlo Park, California\"}");
  EXPECT_EQ(call.id.rfind("call_", 0), 0u);
  EXPECT_TRUE(message.ends_with_eom);
  EXPECT_EQ(message.content, "");
  EXPECT_TRUE(message.errors.empty());
}

TEST(ToolCallParser, WolframAlphaWithSeveralKeywordsAndEscapes) {
  const ParsedAssistantMessage message = parse(
      "<|python_tag|>wolfram_alpha.call(query='solve x^2 = 4 \\'now\\'', limit=3, scale=-1.5e2, exact=True, "
      "unit=None, note=\"say \\\"hi\\\"\\n\")<|eom_id|>");
  ASSERT_EQ(message.tool_calls.size(), 1u) << (message.errors.empty() ? "" : message.errors[0]);
  const json& arguments = message.tool_calls[0].arguments;
  EXPECT_EQ(message.tool_calls[0].name, "wolfram_alpha");
  EXPECT_EQ(arguments["query"], "solve x^2 = 4 'now'");
  EXPECT_EQ(arguments["limit"], 3);
  EXPECT_TRUE(arguments["limit"].is_number_integer());
  EXPECT_DOUBLE_EQ(arguments["scale"].get<double>(), -150.0);
  EXPECT_EQ(arguments["exact"], true);
  EXPECT_TRUE(arguments["unit"].is_null());
  EXPECT_EQ(arguments["note"], "say \"hi\"\n");
}

TEST(ToolCallParser, PositionalBuiltinArgumentIsTheQuery) {
  const ParsedAssistantMessage message = parse("<|python_tag|>brave_search.call(\"Llama 3.1 release date\")<|eom_id|>");
  ASSERT_EQ(message.tool_calls.size(), 1u) << (message.errors.empty() ? "" : message.errors[0]);
  EXPECT_EQ(message.tool_calls[0].arguments, json({{"query", "Llama 3.1 release date"}}));
  EXPECT_FALSE(parse("<|python_tag|>brave_search.call(\"a\", \"b\")<|eom_id|>").errors.empty());
}

TEST(ToolCallParser, UnicodeInBuiltinArguments) {
  const ParsedAssistantMessage message =
      parse("<|python_tag|>brave_search.call(query=\"caf\\u00e9 in M\u00fcnchen \\U0001F600 \u65e5\u672c\")<|eom_id|>");
  ASSERT_EQ(message.tool_calls.size(), 1u) << (message.errors.empty() ? "" : message.errors[0]);
  EXPECT_EQ(message.tool_calls[0].arguments["query"], "caf\u00e9 in M\u00fcnchen \U0001F600 \u65e5\u672c");
}

TEST(ToolCallParser, CodeInterpreterCall) {
  const std::string code = "import math\nprint(math.sqrt(2) * \"{\")";
  const ParsedAssistantMessage message = parse("<|python_tag|>" + code + "\n<|eom_id|>");
  ASSERT_EQ(message.tool_calls.size(), 1u);
  EXPECT_EQ(message.tool_calls[0].name, "code_interpreter");
  EXPECT_EQ(message.tool_calls[0].kind, "code_interpreter");
  EXPECT_EQ(message.tool_calls[0].arguments, json({{"code", code}}));
  EXPECT_TRUE(message.ends_with_eom);
}

TEST(ToolCallParser, UnknownDotCallIsCodeNotBuiltin) {
  const ParsedAssistantMessage message = parse("<|python_tag|>photo_gen.call(prompt=\"a cat\")<|eom_id|>");
  ASSERT_EQ(message.tool_calls.size(), 1u);
  EXPECT_EQ(message.tool_calls[0].kind, "code_interpreter");
}

TEST(ToolCallParser, CustomJsonCallWithNestedParameters) {
  const ParsedAssistantMessage message = parse(
      "{\"name\": \"get_weather\", \"parameters\": {\"location\": {\"city\": \"Z\u00fcrich\", \"coords\": [47.37, "
      "8.54]}, \"unit\": \"celsius\", \"quote\": \"he said \\\"hi\\\" {not a brace}\"}}<|eot_id|>");
  ASSERT_EQ(message.tool_calls.size(), 1u) << (message.errors.empty() ? "" : message.errors[0]);
  const ToolCall& call = message.tool_calls[0];
  EXPECT_EQ(call.kind, "custom");
  EXPECT_EQ(call.name, "get_weather");
  EXPECT_EQ(call.arguments["location"]["city"], "Z\u00fcrich");
  EXPECT_EQ(call.arguments["location"]["coords"][1], 8.54);
  EXPECT_EQ(call.arguments["quote"], "he said \"hi\" {not a brace}");
  EXPECT_EQ(json::parse(call.arguments_json), call.arguments);
  EXPECT_EQ(call.arguments_json.find(' '), call.arguments_json.find("said") - 1) << "compact JSON expected";
  EXPECT_FALSE(message.ends_with_eom);
  EXPECT_EQ(message.content, "");
}

TEST(ToolCallParser, CustomJsonAcceptsArgumentsKeyAndPythonTag) {
  const ParsedAssistantMessage message =
      parse("<|python_tag|>{\"name\": \"lookup\", \"arguments\": {\"id\": 7}}<|eom_id|>");
  ASSERT_EQ(message.tool_calls.size(), 1u) << (message.errors.empty() ? "" : message.errors[0]);
  EXPECT_EQ(message.tool_calls[0].name, "lookup");
  EXPECT_EQ(message.tool_calls[0].arguments, json({{"id", 7}}));
}

TEST(ToolCallParser, ParametersGivenAsJsonTextAreDecoded) {
  const ParsedAssistantMessage message =
      parse("{\"name\": \"lookup\", \"parameters\": \"{\\\"id\\\": 7}\"}");
  ASSERT_EQ(message.tool_calls.size(), 1u) << (message.errors.empty() ? "" : message.errors[0]);
  EXPECT_EQ(message.tool_calls[0].arguments, json({{"id", 7}}));
  EXPECT_FALSE(parse("{\"name\": \"lookup\", \"parameters\": \"not json\"}").errors.empty());
}

TEST(ToolCallParser, MultipleCustomCallsSeparatedBySemicolonsAndNewlines) {
  const ParsedAssistantMessage message = parse(
      "{\"name\": \"a\", \"parameters\": {\"x\": 1}}; {\"name\": \"b\", \"parameters\": {}}\n"
      "{\"name\": \"c\", \"parameters\": {\"y\": \"z\"}}<|eot_id|>");
  ASSERT_EQ(message.tool_calls.size(), 3u) << (message.errors.empty() ? "" : message.errors[0]);
  EXPECT_EQ(message.tool_calls[0].name, "a");
  EXPECT_EQ(message.tool_calls[1].name, "b");
  EXPECT_EQ(message.tool_calls[2].arguments, json({{"y", "z"}}));
  std::set<std::string> ids;
  for (const ToolCall& call : message.tool_calls) ids.insert(call.id);
  EXPECT_EQ(ids.size(), 3u);
}

TEST(ToolCallParser, TextBeforePythonTagIsContent) {
  const ParsedAssistantMessage message =
      parse("Let me look that up. <|python_tag|>brave_search.call(query=\"llamas\")<|eom_id|>");
  ASSERT_EQ(message.tool_calls.size(), 1u);
  EXPECT_EQ(message.content, "Let me look that up. ");
}

TEST(ToolCallParser, JsonThatIsNotACallStaysTextWithoutError) {
  const ParsedAssistantMessage message = parse("{\"city\": \"Paris\", \"population\": 2100000}<|eot_id|>");
  EXPECT_TRUE(message.tool_calls.empty());
  EXPECT_TRUE(message.errors.empty());
  EXPECT_EQ(message.content, "{\"city\": \"Paris\", \"population\": 2100000}");
  const ParsedAssistantMessage braces = parse("{ this is just a brace in prose }");
  EXPECT_TRUE(braces.errors.empty());
  EXPECT_EQ(braces.content, "{ this is just a brace in prose }");
  const std::string deep = "{\"a\": " + std::string(1000, '[') + std::string(1000, ']') + "}";
  EXPECT_TRUE(parse(deep).errors.empty());
  EXPECT_EQ(parse(deep).content, deep);
}

TEST(ToolCallParser, MalformedCallsAreReportedAndKeptAsText) {
  struct Case {
    std::string text;
    std::string content;
  };
  const std::vector<Case> cases = {
      {"<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Par<|eom_id|>",
       "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Par"},
      {"<|python_tag|>brave_search.call(query=\"unbalanced)<|eom_id|>", "brave_search.call(query=\"unbalanced)"},
      {"<|python_tag|>brave_search.call(query=\"x\"<|eom_id|>", "brave_search.call(query=\"x\""},
      {"<|python_tag|>wolfram_alpha.call(query=bare_word)<|eom_id|>", "wolfram_alpha.call(query=bare_word)"},
      {"{\"parameters\": {\"city\": \"Paris\"}}<|eot_id|>", "{\"parameters\": {\"city\": \"Paris\"}}"},
      {"{\"name\": \"f\", \"parameters\": {\"a\": 1}", "{\"name\": \"f\", \"parameters\": {\"a\": 1}"},
      {"{\"name\": \"f\", \"parameters\": [1, 2]}", "{\"name\": \"f\", \"parameters\": [1, 2]}"},
      {"{\"name\": \"f\", \"parameters\": {}} and then some prose", "{\"name\": \"f\", \"parameters\": {}} and then some prose"},
      {"<|python_tag|>   <|eom_id|>", "   "},
      {"<|python_tag|>brave_search.call(query=" + std::string(50000, '[') + ")",
       "brave_search.call(query=" + std::string(50000, '[') + ")"},
      {"{\"name\": " + std::string(50000, '['), "{\"name\": " + std::string(50000, '[')},
      {"{\"name\": \"f\", \"parameters\": " + std::string(20000, '[') + std::string(20000, ']') + "}",
       "{\"name\": \"f\", \"parameters\": " + std::string(20000, '[') + std::string(20000, ']') + "}"},
  };
  for (const Case& test_case : cases) {
    const ParsedAssistantMessage message = parse(test_case.text);
    EXPECT_TRUE(message.tool_calls.empty()) << test_case.text;
    EXPECT_FALSE(message.errors.empty()) << test_case.text;
    EXPECT_EQ(message.content, test_case.content) << test_case.text;
  }
}

TEST(ToolCallParser, KnownToolNamesDecideCustomCalls) {
  ToolCallParseOptions options = deterministic();
  options.custom_tool_names = {"get_weather"};
  const std::string unknown = "{\"name\": \"delete_everything\", \"parameters\": {}}";
  const ParsedAssistantMessage rejected = parse_assistant_message(unknown, options);
  EXPECT_TRUE(rejected.tool_calls.empty());
  EXPECT_EQ(rejected.content, unknown);
  ASSERT_EQ(rejected.errors.size(), 1u);
  EXPECT_NE(rejected.errors[0].find("delete_everything"), std::string::npos);

  const ParsedAssistantMessage accepted =
      parse_assistant_message("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}", options);
  ASSERT_EQ(accepted.tool_calls.size(), 1u);
  EXPECT_EQ(accepted.tool_calls[0].name, "get_weather");
  // Without a list, any name is a call.
  EXPECT_EQ(parse(unknown).tool_calls.size(), 1u);
}

TEST(ToolCallParser, IdsAreDeterministicOnRequestAndUniqueOtherwise) {
  const std::string text = "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {}}";
  EXPECT_EQ(parse(text), parse(text));
  const ParsedAssistantMessage first = parse_assistant_message(text);
  const ParsedAssistantMessage second = parse_assistant_message(text);
  ASSERT_EQ(first.tool_calls.size(), 2u);
  ASSERT_EQ(second.tool_calls.size(), 2u);
  const std::set<std::string> ids = {first.tool_calls[0].id, first.tool_calls[1].id, second.tool_calls[0].id,
                                     second.tool_calls[1].id};
  EXPECT_EQ(ids.size(), 4u);
  for (const std::string& id : ids) EXPECT_EQ(id.rfind("call_", 0), 0u);
}

TEST(ToolCallParser, TextAfterTheTerminatorIsIgnored) {
  const ParsedAssistantMessage message = parse("Done.<|eot_id|><|start_header_id|>user");
  EXPECT_EQ(message.content, "Done.");
}

TEST(ToolCallParser, PythonKeywordArgumentsRejectBadInput) {
  EXPECT_EQ(parse_python_keyword_arguments("a=[1, 'two', {'k': None}], b=(True,)"),
            json({{"a", json::array({1, "two", {{"k", nullptr}}})}, {"b", json::array({true})}}));
  EXPECT_THROW(parse_python_keyword_arguments("a=" + std::string(100000, '[')), llama31::Error);
  for (const char* bad : {"a=", "a='x", "a=1 b=2", "=3", "a=1, a=2", "a=\"x\\u12\"", "a=[1, 2"}) {
    EXPECT_THROW(parse_python_keyword_arguments(bad), llama31::Error) << bad;
  }
}

TEST(ToolCallParser, OpenAiMessageAndIpythonResult) {
  const ParsedAssistantMessage message = parse("<|python_tag|>brave_search.call(query=\"q\")<|eom_id|>");
  const json openai = to_openai_assistant_message(message);
  EXPECT_EQ(openai["role"], "assistant");
  EXPECT_TRUE(openai["content"].is_null());
  EXPECT_EQ(openai["tool_calls"][0]["type"], "function");
  EXPECT_EQ(openai["tool_calls"][0]["function"]["name"], "brave_search");
  EXPECT_EQ(openai["tool_calls"][0]["function"]["arguments"], "{\"query\":\"q\"}");
  EXPECT_EQ(openai["tool_calls"][0]["id"], message.tool_calls[0].id);
  EXPECT_EQ(to_openai_assistant_message(parse("hi"))["content"], "hi");

  EXPECT_EQ(ipython_tool_result_message("sunny, 21C"), json({{"role", "ipython"}, {"content", "sunny, 21C"}}));
  EXPECT_EQ(ipython_tool_result_message(json({{"temp", 21}})),
            json({{"role", "ipython"}, {"content", "{\"temp\":21}"}}));
}

// ---- streaming ----

struct StreamOutcome {
  std::string emitted;
  ParsedAssistantMessage message;
};

StreamOutcome stream(const std::vector<std::string>& pieces) {
  ToolCallStreamParser parser(deterministic());
  StreamOutcome outcome;
  for (const std::string& piece : pieces) outcome.emitted += parser.feed(piece);
  outcome.message = parser.finish();
  EXPECT_EQ(outcome.emitted + parser.remaining_content(), outcome.message.content);
  return outcome;
}

// Pieces as a tokenizer would give them: special tokens whole, other text in 1-4 byte chunks.
std::vector<std::string> token_like_pieces(const std::string& text) {
  std::vector<std::string> pieces;
  std::size_t pos = 0;
  std::size_t chunk = 1;
  while (pos < text.size()) {
    std::size_t length = chunk;
    if (text.compare(pos, 2, "<|") == 0) {
      const std::size_t close = text.find("|>", pos);
      if (close != std::string::npos) length = close + 2 - pos;
    } else {
      const std::size_t next_special = text.find("<|", pos);
      if (next_special != std::string::npos) length = std::min(length, next_special - pos);
    }
    pieces.push_back(text.substr(pos, length));
    pos += length;
    chunk = chunk % 4 + 1;
  }
  return pieces;
}

const std::vector<std::string>& streaming_cases() {
  static const std::vector<std::string> cases = {
      "The capital of France is Paris.<|eot_id|>",
      "  Use <|python_tag|> only when needed? No: plain <| text |> here.",
      "<|python_tag|>brave_search.call(query=\"current weather in Menlo Park\")<|eom_id|>",
      "<|python_tag|>wolfram_alpha.call(query='x \\'y\\'', n=2, ok=False)<|eom_id|>",
      "<|python_tag|>brave_search.call(query=\"caf\\u00e9 M\u00fcnchen \u65e5\u672c \U0001F600\")<|eom_id|>",
      "<|python_tag|>import math\nprint(math.pi)\n<|eom_id|>",
      "<|python_tag|>wolfram_alpha.call('integrate x^2')<|eom_id|>",
      "{\"name\": \"get_weather\", \"parameters\": {\"loc\": {\"city\": \"Z\u00fcrich\"}, \"q\": \"a \\\"b\\\"\"}}<|eot_id|>",
      "<|python_tag|>{\"name\": \"lookup\", \"arguments\": {\"id\": 7}}<|eom_id|>",
      "{\"name\": \"a\", \"parameters\": {\"x\": 1}}; {\"name\": \"b\", \"parameters\": {}}\n{\"name\": \"c\", "
      "\"parameters\": {}}",
      "Searching now. <|python_tag|>brave_search.call(query=\"llamas\")<|eom_id|>",
      "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Par<|eom_id|>",
      "<|python_tag|>brave_search.call(query=\"unbalanced)<|eom_id|>",
      "{\"parameters\": {\"city\": \"Paris\"}}<|eot_id|>",
      "{\"city\": \"Paris\"} is a JSON object.",
      "Gr\u00fc\u00dfe aus K\u00f6ln \u2014 \U0001F600 <",
      "Done.<|eot_id|>ignored <|python_tag|>x",
  };
  return cases;
}

TEST(ToolCallStreamParser, EveryTwoPieceSplitMatchesWholeParse) {
  for (const std::string& text : streaming_cases()) {
    const ParsedAssistantMessage whole = parse(text);
    for (std::size_t split = 0; split <= text.size(); ++split) {
      const StreamOutcome streamed = stream({text.substr(0, split), text.substr(split)});
      ASSERT_EQ(streamed.message, whole) << text << " split at " << split;
    }
  }
}

TEST(ToolCallStreamParser, ByteByByteAndTokenLikePiecesMatchWholeParse) {
  for (const std::string& text : streaming_cases()) {
    const ParsedAssistantMessage whole = parse(text);
    std::vector<std::string> bytes;
    for (const char c : text) bytes.emplace_back(1, c);
    EXPECT_EQ(stream(bytes).message, whole) << text;
    EXPECT_EQ(stream(token_like_pieces(text)).message, whole) << text;
  }
}

TEST(ToolCallStreamParser, MutatedGenerationsNeverCrashAndStreamLikeWholeParse) {
  std::mt19937 generator(1234);
  const std::string alphabet = "{}[]()\"'\\,;:=.\n x7<|>_";
  for (int round = 0; round < 400; ++round) {
    std::string text = streaming_cases()[static_cast<std::size_t>(round) % streaming_cases().size()];
    for (int edit = 0; edit < 3 && !text.empty(); ++edit) {
      const std::size_t at = std::uniform_int_distribution<std::size_t>(0, text.size() - 1)(generator);
      const char replacement = alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(generator)];
      if (edit == 2) text.erase(at);  // truncation, as when generation stops at max_tokens
      else text[at] = replacement;
    }
    const ParsedAssistantMessage whole = parse(text);
    EXPECT_TRUE(whole.tool_calls.empty() || whole.errors.empty()) << text;
    EXPECT_EQ(stream(token_like_pieces(text)).message, whole) << text;
  }
}

TEST(ToolCallStreamParser, PlainTextFlowsOutBeforeFinish) {
  ToolCallStreamParser parser(deterministic());
  EXPECT_EQ(parser.feed("Hello"), "Hello");
  EXPECT_EQ(parser.feed(" wor"), " wor");
  EXPECT_EQ(parser.feed("ld <"), "ld ");  // "<" may begin a special token
  EXPECT_EQ(parser.feed("3"), "<3");
  EXPECT_EQ(parser.feed("\xC3"), "");  // half of a UTF-8 character is held
  EXPECT_EQ(parser.feed("\xA9"), "\xC3\xA9");
  EXPECT_EQ(parser.feed("<|eot_id|>"), "");
  EXPECT_EQ(parser.finish().content, "Hello world <3\xC3\xA9");
  EXPECT_EQ(parser.remaining_content(), "");
}

TEST(ToolCallStreamParser, HoldsPossibleToolCalls) {
  ToolCallStreamParser json_parser(deterministic());
  EXPECT_EQ(json_parser.feed("  "), "");
  EXPECT_EQ(json_parser.feed("{\"name\""), "");
  EXPECT_TRUE(json_parser.holding_possible_tool_call());
  EXPECT_EQ(json_parser.feed(": \"f\", \"parameters\": {}}"), "");
  EXPECT_EQ(json_parser.finish().tool_calls.size(), 1u);

  ToolCallStreamParser tag_parser(deterministic());
  EXPECT_EQ(tag_parser.feed("One moment. <|python"), "One moment. ");
  EXPECT_EQ(tag_parser.feed("_tag|>brave_search"), "");
  EXPECT_TRUE(tag_parser.holding_possible_tool_call());
  EXPECT_EQ(tag_parser.feed(".call(query=\"x\")"), "");
  const ParsedAssistantMessage message = tag_parser.finish();
  ASSERT_EQ(message.tool_calls.size(), 1u);
  EXPECT_EQ(message.content, "One moment. ");
  EXPECT_EQ(tag_parser.remaining_content(), "");
  EXPECT_THROW(tag_parser.feed("more"), llama31::Error);
}

TEST(ToolCallStreamParser, MalformedHeldTextComesBackAsRemainingContent) {
  ToolCallStreamParser parser(deterministic());
  EXPECT_EQ(parser.feed("<|python_tag|>brave_search.call(query=\"oops"), "");
  EXPECT_EQ(parser.feed("<|eom_id|>"), "");
  const ParsedAssistantMessage message = parser.finish();
  EXPECT_FALSE(message.errors.empty());
  EXPECT_TRUE(message.ends_with_eom);
  EXPECT_EQ(parser.remaining_content(), "brave_search.call(query=\"oops");
}

}  // namespace
}  // namespace llama31::chat
