// Single-feature templates (tests/data/chat/jinja_snippets.json, rendered by Python's Jinja2 with transformers'
// setup via tools/chat-reference/generate_snippets.py) must render byte for byte the same here.
#include "chat/jinja/template.h"
#include "util/error.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

namespace {

TEST(JinjaSnippets, EverySnippetMatchesPythonJinja2) {
  std::ifstream in(std::string(LLAMA31_SOURCE_DIR) + "/tests/data/chat/jinja_snippets.json", std::ios::binary);
  ASSERT_TRUE(in.good());
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto data = nlohmann::json::parse(buffer.str());
  ASSERT_GE(data.at("cases").size(), 30u);
  for (const auto& entry : data.at("cases")) {
    std::string source = entry.at("template");
    try {
      auto parsed = llama31::JinjaTemplate::parse(source, "snippet");
      std::string actual = parsed.render(data.at("context"));
      if (entry.contains("output")) {
        EXPECT_EQ(actual, entry.at("output").get<std::string>()) << source;
      } else {
        ADD_FAILURE() << source << ": expected error " << entry.at("error");
      }
    } catch (const llama31::Error& error) {
      if (entry.contains("output")) {
        ADD_FAILURE() << source << ": unexpected error " << error.what();
      } else if (entry.at("raised").get<bool>()) {
        EXPECT_EQ(std::string(error.what()), entry.at("error").get<std::string>()) << source;
      }
    }
  }
}

}  // namespace
