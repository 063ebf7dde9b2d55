// Constrained (grammar-guided) decoding: a TokenConstraint says which tokens may come next so that the
// generated text stays a prefix of the language it describes, as vLLM's guided decoding and llama.cpp's
// grammars do. The sampler sees only the allowed tokens.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

namespace llama31 {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Sets the logit of every token that cannot come next to -infinity. Once the text is a complete
  // value, only the end tokens stay allowed. Never leaves all tokens disallowed.
  // remaining_tokens: how many tokens the sequence may still generate, this one included. When it is
  // no more than the shortest way to complete the value, only tokens on that shortest completion stay
  // allowed, so even a weak model finishes a well-formed value within its token budget.
  virtual void mask(std::span<float> logits, int remaining_tokens) = 0;
  // The fewest tokens that can complete the value from here (end token not counted).
  virtual int min_tokens_to_complete() const = 0;
  // Advances over the token that was sampled; returns false (and does not advance) if it was not allowed.
  virtual bool accept(TokenId token) = 0;
  // The text so far is a complete value: generation should end here.
  virtual bool complete() const = 0;
};

// Builds constraints for one tokenizer. Construction indexes the vocabulary once (shared by every
// constraint it makes); make_* are cheap and thread-safe.
class JsonConstraintFactory {
 public:
  // end_tokens: the tokens allowed once the value is complete (e.g. <|eot_id|>, <|eom_id|>).
  JsonConstraintFactory(const Tokenizer& tokenizer, std::vector<TokenId> end_tokens);
  ~JsonConstraintFactory();
  JsonConstraintFactory(const JsonConstraintFactory&) = delete;
  JsonConstraintFactory& operator=(const JsonConstraintFactory&) = delete;

  // Any JSON object (OpenAI's response_format {"type": "json_object"}).
  std::unique_ptr<TokenConstraint> any_json_object() const;
  // A JSON value satisfying a JSON schema (response_format json_schema; tool arguments).
  // Errors (llama31::Error) name the unsupported or invalid schema part.
  std::unique_ptr<TokenConstraint> json_schema(const nlohmann::json& schema) const;
  // A Llama 3.1 custom tool call, {"name": "<one of functions>", "parameters": {...}}, whose parameters
  // satisfy that function's JSON schema. functions: OpenAI tool entries' "function" objects
  // ({"name", "parameters"}); one entry forces that function.
  std::unique_ptr<TokenConstraint> tool_call(const nlohmann::json& functions) const;

 private:
  struct Index;
  std::unique_ptr<Index> index_;
  std::vector<TokenId> end_tokens_;
};

}  // namespace llama31
