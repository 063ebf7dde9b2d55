// render_chat input validation, engine limits and error reporting.
#include "chat/chat_template.h"
#include "chat/jinja/template.h"
#include "util/error.h"

#include <gtest/gtest.h>

#include <string>

namespace {

using nlohmann::json;

const json kHello = json::array({{{"role", "user"}, {"content", "Hello"}}});

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const llama31::Error& error) {
    return error.what();
  }
  return "(no error)";
}

TEST(ChatTemplate, OfficialTemplateRendersLlama31Prompt) {
  std::string prompt = llama31::render_chat(llama31::official_llama31_template(), kHello, nullptr, true,
                                            {{"date_string", "26 Jul 2024"}}, "<|begin_of_text|>");
  EXPECT_EQ(prompt,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
            "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, BuiltinToolsAddIpythonEnvironment) {
  std::string prompt = llama31::render_chat(llama31::official_llama31_template(), kHello, nullptr, false,
                                            {{"date_string", "26 Jul 2024"}, {"builtin_tools", {"code_interpreter"}}}, "");
  EXPECT_NE(prompt.find("Environment: ipython\n"), std::string::npos) << prompt;
  EXPECT_EQ(prompt.find("code_interpreter"), std::string::npos) << prompt;  // the template rejects it from Tools:
}

TEST(ChatTemplate, RejectsUnknownRole) {
  json messages = json::array({{{"role", "wizard"}, {"content", "x"}}});
  EXPECT_NE(error_of([&] { llama31::render_chat("{{ 1 }}", messages, nullptr, true, nullptr, ""); }).find("messages[0].role 'wizard'"),
            std::string::npos);
}

TEST(ChatTemplate, RejectsNonArrayToolsAndMessages) {
  EXPECT_NE(error_of([&] { llama31::render_chat("x", kHello, json::object(), true, nullptr, ""); }).find("tools must be an array"),
            std::string::npos);
  EXPECT_NE(error_of([&] { llama31::render_chat("x", json::object(), nullptr, true, nullptr, ""); }).find("messages must be an array"),
            std::string::npos);
  EXPECT_NE(error_of([&] { llama31::render_chat("x", json::array({"hi"}), nullptr, true, nullptr, ""); }).find("messages[0] must be an object"),
            std::string::npos);
}

TEST(ChatTemplate, RejectsInvalidUtf8) {
  json messages = json::array({{{"role", "user"}, {"content", std::string("bad \xC3\x28 text")}}});
  EXPECT_NE(error_of([&] { llama31::render_chat("x", messages, nullptr, true, nullptr, ""); }).find("messages[0].content is not valid UTF-8"),
            std::string::npos);
  json truncated = json::array({{{"role", "user"}, {"content", std::string("end \xE2\x82")}}});
  EXPECT_NE(error_of([&] { llama31::render_chat("x", truncated, nullptr, true, nullptr, ""); }), "(no error)");
}

TEST(ChatTemplate, SyntaxErrorNamesLineAndColumn) {
  std::string message = error_of([&] { llama31::render_chat("line one\n{% if %}", kHello, nullptr, true, nullptr, ""); });
  EXPECT_EQ(message.rfind("chat_template:2:", 0), 0u) << message;
  std::string unclosed = error_of([&] { llama31::JinjaTemplate::parse("{% for x in y %}", "t.jinja"); });
  EXPECT_NE(unclosed.find("t.jinja:"), std::string::npos) << unclosed;
  EXPECT_NE(unclosed.find("endfor"), std::string::npos) << unclosed;
}

TEST(ChatTemplate, RaiseExceptionMessageIsTheError) {
  EXPECT_EQ(error_of([&] { llama31::render_chat("{{ raise_exception('no system role') }}", kHello, nullptr, true, nullptr, ""); }),
            "no system role");
}

TEST(ChatTemplate, RunawayLoopAndRecursionAreBounded) {
  std::string loop = "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}";
  EXPECT_NE(error_of([&] { llama31::render_chat(loop, kHello, nullptr, true, nullptr, ""); }).find("loop iteration limit"),
            std::string::npos);
  std::string recursion = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
  EXPECT_NE(error_of([&] { llama31::render_chat(recursion, kHello, nullptr, true, nullptr, ""); }).find("recursion"),
            std::string::npos);
}

TEST(ChatTemplate, StrftimeNowUsesInjectedClock) {
  auto parsed = llama31::JinjaTemplate::parse("{{ strftime_now('%d %b %Y') }}", "clock");
  parsed.set_clock([] {
    std::tm fixed{};
    fixed.tm_year = 2024 - 1900;
    fixed.tm_mon = 6;
    fixed.tm_mday = 26;
    return fixed;
  });
  EXPECT_EQ(parsed.render(json::object()), "26 Jul 2024");
}

TEST(ChatTemplate, UndefinedCallAndAttributeOfUndefinedError) {
  EXPECT_NE(error_of([&] { llama31::JinjaTemplate::parse("{{ nope() }}", "t").render(json::object()); }), "(no error)");
  EXPECT_EQ(error_of([&] { llama31::JinjaTemplate::parse("\n  {{ nope.x }}", "t.jinja").render(json::object()); }),
            "t.jinja:2:10: 'nope' is undefined");  // at the "."
  EXPECT_EQ(llama31::JinjaTemplate::parse("[{{ nope }}]{% for x in nope %}x{% endfor %}", "t").render(json::object()), "[]");
}

}  // namespace

namespace {

TEST(ChatTemplate, HostileNestingIsAnErrorNotACrash) {
  std::string brackets = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  EXPECT_NE(error_of([&] { llama31::JinjaTemplate::parse(brackets, "t"); }), "(no error)");
  std::string chain = "{{ 1";
  for (int i = 0; i < 100000; ++i) chain += "+1";
  EXPECT_NE(error_of([&] { llama31::JinjaTemplate::parse(chain + " }}", "t"); }), "(no error)");
  std::string blocks;
  for (int i = 0; i < 5000; ++i) blocks += "{% if true %}";
  EXPECT_NE(error_of([&] { llama31::JinjaTemplate::parse(blocks, "t"); }), "(no error)");
}

}  // namespace
