// Tokens and syntax tree of the Jinja engine.
#pragma once

#include "chat/jinja/value.h"

#include <memory>
#include <string>
#include <vector>

namespace llama31::jinja {

struct SourcePosition {
  int line = 1;
  int column = 1;
};

enum class TokenKind { Text, VariableBegin, VariableEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Operator, End };

struct Token {
  TokenKind kind = TokenKind::End;
  std::string text;  // text content, name, decoded string literal, number or operator spelling
  SourcePosition position;
};

enum class ExprKind {
  Literal, Name, GetAttr, GetItem, Slice, Call, Filter, Test, Negate, Plus, Not, Binary, And, Or, Compare,
  Conditional, ListLiteral, TupleLiteral, DictLiteral
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind = ExprKind::Literal;
  SourcePosition position;
  Value literal;                         // Literal
  std::string name;                      // Name, GetAttr attribute, Filter/Test name, Binary operator
  std::vector<ExprPtr> children;         // operands / items / call arguments (first child: callee or object)
  std::vector<std::string> keyword_names;  // Call/Filter/Test: names of the trailing keyword arguments
  std::vector<std::string> compare_ops;  // Compare: one operator per operand after the first
  bool negated = false;                  // Test: "is not"
  // Slice: children = object, start, stop, step (null pointers where omitted)
};

enum class NodeKind { Text, Output, If, For, Set, SetBlock, Macro, Break, Continue };

struct Node;
using NodePtr = std::unique_ptr<Node>;
using NodeList = std::vector<NodePtr>;

struct Node {
  NodeKind kind = NodeKind::Text;
  SourcePosition position;
  std::string text;                      // Text; Macro name; Set target name
  std::string attribute;                 // Set: "ns.attr" target attribute
  std::vector<std::string> targets;      // For/Set: unpacking targets
  std::vector<ExprPtr> conditions;       // If: one per branch; For: [iterable, optional filter]
  std::vector<NodeList> bodies;          // If: one per branch (+ else); For: body (+ else); Macro/SetBlock: body
  ExprPtr value;                         // Output/Set expression
  std::vector<std::string> parameters;   // Macro
  std::vector<ExprPtr> defaults;         // Macro: one per parameter (null when none)
};

}  // namespace llama31::jinja
