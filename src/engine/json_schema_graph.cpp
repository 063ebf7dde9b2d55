// JSON schema -> node graph. Supported: type (incl. lists), properties (schema order; optional ones may be
// skipped), required, additionalProperties (constrained output never adds keys beyond "properties" when
// "properties" is given; an object without "properties" takes free keys with values of the
// additionalProperties schema, or any value), items, minItems/maxItems, enum, const, anyOf, oneOf (treated
// as anyOf: values matching several branches are not excluded), $ref to #/$defs or #/definitions
// (recursion allowed), minLength/maxLength, boolean schemas. Ignored (annotations or not enforced):
// title, description, default, examples, format, pattern, $schema, $id, $comment, deprecated, readOnly,
// writeOnly, contentEncoding, contentMediaType. Keywords that change validity and are not enforced
// (minimum, maximum, allOf, not, ...) are errors naming them.
#include "engine/json_schema_graph.h"

#include <algorithm>
#include <set>

#include "util/error.h"

namespace llama31::json_grammar {

namespace {

const std::set<std::string>& ignored_keywords() {
  static const std::set<std::string> k = {"title", "description", "default", "examples", "format", "pattern",
                                          "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly",
                                          "contentEncoding", "contentMediaType", "$defs", "definitions",
                                          "strict", "nullable"};
  return k;
}
const std::set<std::string>& handled_keywords() {
  static const std::set<std::string> k = {"type", "properties", "required", "additionalProperties", "items",
                                          "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "$ref",
                                          "minLength", "maxLength"};
  return k;
}

int count_of(const nlohmann::json& schema, const char* key, int fallback, const std::string& path) {
  if (!schema.contains(key)) return fallback;
  const auto& v = schema[key];
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (1 << 20))
    fail("JSON schema {}: {} must be a non-negative integer", path, key);
  return static_cast<int>(v.get<int64_t>());
}

}  // namespace

int SchemaGraph::add(Node node) {
  nodes.push_back(std::move(node));
  return static_cast<int>(nodes.size()) - 1;
}

int SchemaGraph::plain_string() {
  if (plain_string_ < 0) plain_string_ = add(make_node(NodeKind::String));
  return plain_string_;
}

int SchemaGraph::any_object(int depth) {
  depth = std::max(depth, 1);
  if (any_object_ids_.size() <= static_cast<size_t>(depth)) any_object_ids_.resize(depth + 1, -1);
  if (any_object_ids_[depth] >= 0) return any_object_ids_[depth];
  int value = any_value(depth - 1);
  int id = add(make_node(NodeKind::Object, &Node::additional, value));
  any_object_ids_[depth] = id;
  return id;
}

int SchemaGraph::any_value(int depth) {
  if (any_value_ids_.size() <= static_cast<size_t>(depth)) any_value_ids_.resize(depth + 1, -1);
  if (any_value_ids_[depth] >= 0) return any_value_ids_[depth];
  std::vector<int> alts = {plain_string(), add(make_node(NodeKind::Number)),
                           add(make_node(NodeKind::Enum, &Node::literals, {"true", "false", "null"}))};
  if (depth > 0) {
    alts.push_back(any_object(depth));
    alts.push_back(add(make_node(NodeKind::Array, &Node::item, any_value(depth - 1))));
  }
  int id = add(make_node(NodeKind::AnyOf, &Node::alternatives, alts));
  any_value_ids_[depth] = id;
  return id;
}

int SchemaGraph::compile(const nlohmann::json& schema, const nlohmann::json& document, const std::string& path) {
  constexpr int kFreeDepth = 6;  // nesting allowed inside schema parts that admit any value
  if (schema.is_boolean()) {
    if (!schema.get<bool>()) fail("JSON schema {}: the schema false admits no value", path);
    return any_value(kFreeDepth);
  }
  if (!schema.is_object()) fail("JSON schema {}: a schema must be an object or a boolean", path);
  for (const auto& [key, _] : schema.items())
    if (!handled_keywords().count(key) && !ignored_keywords().count(key))
      fail("JSON schema {}: unsupported keyword \"{}\"", path, key);

  if (schema.contains("$ref")) {
    const auto& ref_value = schema["$ref"];
    if (!ref_value.is_string()) fail("JSON schema {}: $ref must be a string", path);
    std::string ref = ref_value.get<std::string>();
    for (const auto& [name, id] : refs_)
      if (name == ref) return id;
    if (ref.rfind("#/$defs/", 0) != 0 && ref.rfind("#/definitions/", 0) != 0)
      fail("JSON schema {}: unsupported $ref \"{}\" (only #/$defs/... and #/definitions/...)", path, ref);
    nlohmann::json::json_pointer pointer(ref.substr(1));
    if (!document.contains(pointer)) fail("JSON schema {}: unknown $ref \"{}\"", path, ref);
    int placeholder = add(make_node(NodeKind::AnyOf));
    refs_.emplace_back(ref, placeholder);
    int target = compile(document[pointer], document, ref);
    nodes[placeholder].alternatives = {target};
    return placeholder;
  }
  if (schema.contains("const")) {
    return add(make_node(NodeKind::Enum, &Node::literals, {schema["const"].dump(-1, ' ', false)}));
  }
  if (schema.contains("enum")) {
    const auto& values = schema["enum"];
    if (!values.is_array() || values.empty()) fail("JSON schema {}: enum must be a non-empty array", path);
    Node node = make_node(NodeKind::Enum);
    for (const auto& v : values) node.literals.push_back(v.dump(-1, ' ', false));
    return add(std::move(node));
  }
  for (const char* key : {"anyOf", "oneOf"}) {
    if (!schema.contains(key)) continue;
    const auto& branches = schema[key];
    if (!branches.is_array() || branches.empty()) fail("JSON schema {}: {} must be a non-empty array", path, key);
    Node node = make_node(NodeKind::AnyOf);
    for (size_t i = 0; i < branches.size(); ++i)
      node.alternatives.push_back(compile(branches[i], document, fmt::format("{}/{}/{}", path, key, i)));
    return add(std::move(node));
  }

  std::vector<std::string> types;
  if (schema.contains("type")) {
    const auto& t = schema["type"];
    if (t.is_string()) {
      types.push_back(t.get<std::string>());
    } else if (t.is_array() && !t.empty()) {
      for (const auto& e : t) {
        if (!e.is_string()) fail("JSON schema {}: type list entries must be strings", path);
        types.push_back(e.get<std::string>());
      }
    } else {
      fail("JSON schema {}: type must be a string or a non-empty list of strings", path);
    }
  } else if (schema.contains("properties") || schema.contains("required") ||
             schema.contains("additionalProperties")) {
    types = {"object"};
  } else if (schema.contains("items") || schema.contains("minItems") || schema.contains("maxItems")) {
    types = {"array"};
  } else if (schema.contains("minLength") || schema.contains("maxLength")) {
    types = {"string"};
  } else {
    return any_value(kFreeDepth);
  }

  std::vector<int> alts;
  for (const auto& type : types) {
    if (type == "string") {
      Node node = make_node(NodeKind::String);
      node.min_count = count_of(schema, "minLength", 0, path);
      node.max_count = count_of(schema, "maxLength", 1 << 30, path);
      if (node.min_count > node.max_count) fail("JSON schema {}: minLength > maxLength", path);
      alts.push_back(add(std::move(node)));
    } else if (type == "number") {
      alts.push_back(add(make_node(NodeKind::Number)));
    } else if (type == "integer") {
      alts.push_back(add(make_node(NodeKind::Integer)));
    } else if (type == "boolean") {
      alts.push_back(add(make_node(NodeKind::Enum, &Node::literals, {"true", "false"})));
    } else if (type == "null") {
      alts.push_back(add(make_node(NodeKind::Enum, &Node::literals, {"null"})));
    } else if (type == "array") {
      Node node = make_node(NodeKind::Array);
      node.min_count = count_of(schema, "minItems", 0, path);
      node.max_count = count_of(schema, "maxItems", 1 << 30, path);
      if (node.min_count > node.max_count) fail("JSON schema {}: minItems > maxItems", path);
      node.item = schema.contains("items") ? compile(schema["items"], document, path + "/items")
                                           : any_value(kFreeDepth);
      alts.push_back(add(std::move(node)));
    } else if (type == "object") {
      Node node = make_node(NodeKind::Object);
      std::vector<std::string> required;
      if (schema.contains("required")) {
        if (!schema["required"].is_array()) fail("JSON schema {}: required must be an array", path);
        for (const auto& r : schema["required"]) {
          if (!r.is_string()) fail("JSON schema {}: required entries must be strings", path);
          required.push_back(r.get<std::string>());
        }
      }
      if (schema.contains("properties")) {
        const auto& props = schema["properties"];
        if (!props.is_object()) fail("JSON schema {}: properties must be an object", path);
        // nlohmann::json keeps object keys sorted, so properties come out in that (alphabetical) order:
        // the schema's own order is already lost in the nlohmann::json the API receives.
        for (const auto& [key, sub] : props.items()) {
          Property p;
          p.key_text = nlohmann::json(key).dump(-1, ' ', false);
          p.node = compile(sub, document, path + "/properties/" + key);
          p.required = std::find(required.begin(), required.end(), key) != required.end();
          node.properties.push_back(std::move(p));
        }
      }
      for (const auto& r : required) {
        bool listed = std::any_of(node.properties.begin(), node.properties.end(), [&](const Property& p) {
          return p.key_text == nlohmann::json(r).dump(-1, ' ', false);
        });
        if (!listed)
          node.properties.push_back(
              Property{nlohmann::json(r).dump(-1, ' ', false), any_value(kFreeDepth), true});
      }
      if (node.properties.empty()) {
        const nlohmann::json additional = schema.value("additionalProperties", nlohmann::json(true));
        if (!(additional.is_boolean() && !additional.get<bool>()))
          node.additional = additional.is_boolean() ? any_value(kFreeDepth)
                                                    : compile(additional, document, path + "/additionalProperties");
      }
      alts.push_back(add(std::move(node)));
    } else {
      fail("JSON schema {}: unknown type \"{}\"", path, type);
    }
  }
  if (alts.size() == 1) return alts[0];
  return add(make_node(NodeKind::AnyOf, &Node::alternatives, alts));
}

void SchemaGraph::finish() {
  for (auto& n : nodes) n.min_length = kInfinity;
  auto object_rest = [&](Node& n) {
    size_t count = n.properties.size();
    n.rest_min.assign(count + 1, 1);
    n.after_comma_min.assign(count + 1, kInfinity);
    for (size_t i = count; i-- > 0;) {
      const Property& p = n.properties[i];
      int item = static_cast<int>(p.key_text.size()) + 1 + nodes[p.node].min_length;
      n.rest_min[i] = std::min(kInfinity, n.rest_min[i + 1] + (p.required ? 1 + item : 0));
      // after a comma: property i is the next one written (optional ones before a required one skipped)
      int here = std::min(kInfinity, item + n.rest_min[i + 1]);
      n.after_comma_min[i] = p.required ? here : std::min(here, n.after_comma_min[i + 1]);
    }
  };
  for (size_t round = 0; round <= nodes.size() + 1; ++round) {
    bool changed = false;
    for (auto& n : nodes) {
      int m = kInfinity;
      switch (n.kind) {
        case NodeKind::AnyOf:
          for (int a : n.alternatives) m = std::min(m, nodes[a].min_length);
          break;
        case NodeKind::Object:
          if (n.properties.empty()) {
            m = 2;
          } else {
            object_rest(n);
            // '{' + rest, where the first required property needs no comma
            m = 1 + n.rest_min[0] - (n.rest_min[0] > 1 ? 1 : 0);
          }
          break;
        case NodeKind::Array: {
          int item = nodes[n.item].min_length;
          m = n.min_count == 0 ? 2 : (item >= kInfinity ? kInfinity : 2 + n.min_count * (item + 1) - 1);
          break;
        }
        case NodeKind::String: m = 2 + n.min_count; break;
        case NodeKind::Number:
        case NodeKind::Integer: m = 1; break;
        case NodeKind::Enum:
          for (const auto& l : n.literals) m = std::min(m, static_cast<int>(l.size()));
          break;
      }
      m = std::min(m, kInfinity);
      if (m != n.min_length) {
        n.min_length = m;
        changed = true;
      }
    }
    if (!changed) break;
  }
  for (auto& n : nodes)
    if (n.kind == NodeKind::Object && !n.properties.empty()) object_rest(n);
  if (nodes[root].min_length >= kInfinity) fail("JSON schema: admits no finite value (endless recursion)");
}

}  // namespace llama31::json_grammar
