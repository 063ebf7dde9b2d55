// Splits Jinja source into tokens, applying whitespace control ({%- -%}, trim_blocks, lstrip_blocks).
#pragma once

#include "chat/jinja/ast.h"

#include <string>
#include <string_view>
#include <vector>

namespace llama31::jinja {

struct LexerOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Errors: llama31::Error "NAME:LINE:COL: message".
std::vector<Token> tokenize(std::string_view source, const std::string& name, const LexerOptions& options);

}  // namespace llama31::jinja
