// Renders every committed reference case (tests/data/chat/cases.json, produced by Python's Jinja2 with
// transformers' setup via tools/chat-reference/generate_cases.py) and compares byte for byte.
#include "chat/jinja/template.h"
#include "util/error.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <sstream>

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

const std::string kDataDir = std::string(LLAMA31_SOURCE_DIR) + "/tests/data/chat/";

TEST(JinjaReferenceCases, EveryCaseMatchesPythonJinja2) {
  auto cases = nlohmann::json::parse(read_text(kDataDir + "cases.json"));
  ASSERT_GE(cases.size(), 200u);
  std::map<std::string, llama31::JinjaTemplate> templates;
  int rendered = 0, errored = 0;
  for (const auto& entry : cases) {
    std::string template_name = entry.at("template");
    std::string label = template_name + " / " + entry.at("name").get<std::string>();
    auto found = templates.find(template_name);
    if (found == templates.end())
      found = templates.emplace(template_name, llama31::JinjaTemplate::parse(read_text(kDataDir + "templates/" + template_name), template_name)).first;
    if (entry.contains("output")) {
      std::string actual;
      try {
        actual = found->second.render(entry.at("context"));
      } catch (const std::exception& error) {
        ADD_FAILURE() << label << ": unexpected error " << error.what();
        continue;
      }
      EXPECT_EQ(actual, entry.at("output").get<std::string>()) << label;
      ++rendered;
    } else {
      try {
        std::string actual = found->second.render(entry.at("context"));
        ADD_FAILURE() << label << ": expected error '" << entry.at("error").get<std::string>() << "', rendered:\n" << actual;
      } catch (const llama31::Error& error) {
        if (entry.at("raised").get<bool>()) {
          EXPECT_EQ(std::string(error.what()), entry.at("error").get<std::string>()) << label;
        }
      }
      ++errored;
    }
  }
  EXPECT_GT(rendered, 0);
  EXPECT_GT(errored, 0);
}

}  // namespace
