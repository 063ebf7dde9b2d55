// Builds the syntax tree from tokens.
#pragma once

#include "chat/jinja/ast.h"

#include <string>
#include <vector>

namespace llama31::jinja {

// Errors: llama31::Error "NAME:LINE:COL: message".
NodeList parse_tokens(const std::vector<Token>& tokens, const std::string& name);

}  // namespace llama31::jinja
