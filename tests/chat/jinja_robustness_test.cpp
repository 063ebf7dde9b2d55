// Broken templates (every prefix of real templates, random byte edits) only ever fail with llama31::Error.
#include "chat/chat_template.h"
#include "chat/jinja/template.h"
#include "util/error.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>
#include <string>

namespace {

const nlohmann::json kContext = {
    {"messages", {{{"role", "system"}, {"content", "s"}}, {{"role", "user"}, {"content", "u"}}}},
    {"add_generation_prompt", true},
    {"bos_token", "<s>"},
    {"date_string", "26 Jul 2024"}};

// Returns "" on success or llama31::Error; any other exception type fails the test.
void render_or_error(const std::string& source) {
  try {
    llama31::JinjaTemplate::parse(source, "fuzz").render(kContext);
  } catch (const llama31::Error&) {
  } catch (const std::exception& other) {
    ADD_FAILURE() << "non-Error exception " << other.what() << " for template:\n" << source;
  }
}

TEST(JinjaRobustness, EveryPrefixOfTheOfficialTemplateRendersOrErrors) {
  std::string source = llama31::official_llama31_template();
  for (std::size_t length = 0; length <= source.size(); length += 7) render_or_error(source.substr(0, length));
}

TEST(JinjaRobustness, RandomEditsRenderOrError) {
  std::string source = llama31::official_llama31_template();
  std::mt19937 random(1234);
  const std::string alphabet = "{}%#-+()[]|.,:'\"~*/= abcifnotx0123\n";
  for (int trial = 0; trial < 300; ++trial) {
    std::string edited = source;
    for (int edit = 0; edit < 3; ++edit) {
      std::size_t at = random() % edited.size();
      edited[at] = alphabet[random() % alphabet.size()];
    }
    render_or_error(edited);
  }
}

}  // namespace
