// A JSON schema compiled into a graph of value nodes that the JSON constraint automaton walks
// (src/engine/json_constraint.cpp). Supported subset and choices are documented in json_schema_graph.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace llama31::json_grammar {

enum class NodeKind : uint8_t { AnyOf, Object, Array, String, Number, Integer, Enum };

struct Property {
  std::string key_text;  // the key as JSON text, quotes included
  int node = -1;
  bool required = false;
};

struct Node {
  NodeKind kind = NodeKind::AnyOf;
  std::vector<int> alternatives;      // AnyOf
  std::vector<Property> properties;   // Object with fixed keys (emitted in this order)
  int additional = -1;                // Object with free keys: the value node (properties empty)
  int item = -1;                      // Array
  int min_count = 0, max_count = 1 << 30;  // Array items / String characters
  std::vector<std::string> literals;  // Enum: JSON texts
  // Derived by finish(): shortest text of a value, and for objects the shortest rest from property i.
  int min_length = 0;
  std::vector<int> rest_min;   // '}' plus every required property from i on, each with its comma
  std::vector<int> after_comma_min;  // after a ',' before property i: one property then the rest
};

inline Node make_node(NodeKind kind) {
  Node n;
  n.kind = kind;
  return n;
}
template <typename Field>
Node make_node(NodeKind kind, Field Node::*field, std::type_identity_t<Field> value) {
  Node n;
  n.kind = kind;
  n.*field = std::move(value);
  return n;
}

inline constexpr int kInfinity = 1 << 28;

class SchemaGraph {
 public:
  std::vector<Node> nodes;
  int root = -1;

  // Node ids of generic values: any JSON value nested at most depth levels.
  int any_value(int depth);
  int any_object(int depth);
  int plain_string();
  // Compiles a schema (root document for $ref resolution); throws Error naming unsupported parts.
  int compile(const nlohmann::json& schema, const nlohmann::json& document, const std::string& path);
  // Computes min_length etc.; throws when some node admits no finite value.
  void finish();

 private:
  int add(Node node);
  std::vector<int> any_value_ids_, any_object_ids_;
  int plain_string_ = -1;
  std::vector<std::pair<std::string, int>> refs_;
};

}  // namespace llama31::json_grammar
