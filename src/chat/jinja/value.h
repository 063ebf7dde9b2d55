// Runtime values of the Jinja engine, with Python semantics (truthiness, printing, equality).
// Lists and dicts are shared by reference like Python objects; dicts keep insertion order.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace llama31::jinja {

struct Value;

// Positional and keyword arguments of a call.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keywords;
};

using Function = std::function<Value(CallArgs&)>;

enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Callable, Namespace };

using ValueList = std::vector<Value>;
// Ordered dict with string keys (JSON objects, dict literals, namespaces, the loop object).
using ValueDict = std::vector<std::pair<std::string, Value>>;

struct Value {
  Kind kind = Kind::Undefined;
  bool boolean = false;
  std::int64_t integer = 0;
  double floating = 0.0;
  std::string text;                        // String; the name for Undefined (used in error messages)
  std::shared_ptr<ValueList> list;         // List
  std::shared_ptr<ValueDict> dict;         // Dict, Namespace
  std::shared_ptr<Function> function;      // Callable
  bool is_tuple = false;                   // List printed as a Python tuple

  static Value undefined(std::string name = {});
  static Value none();
  static Value from_bool(bool b);
  static Value from_int(std::int64_t i);
  static Value from_float(double f);
  static Value from_string(std::string s);
  static Value from_list(ValueList items);
  static Value from_tuple(ValueList items);
  static Value from_dict(ValueDict items);
  static Value from_function(Function f);
  static Value from_json(const nlohmann::json& json);
  static Value from_json(const nlohmann::ordered_json& json);

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_none() const { return kind == Kind::None; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  bool is_mapping() const { return kind == Kind::Dict || kind == Kind::Namespace; }
  bool is_iterable() const { return kind == Kind::List || kind == Kind::Dict || kind == Kind::String; }

  bool truthy() const;
  double as_double() const;
  // Dict lookup; nullptr when absent (or not a dict).
  const Value* find(const std::string& key) const;
  void set_item(const std::string& key, Value value);
  // Items when iterating: list items, dict keys, string characters (UTF-8 code points),
  // nothing for undefined (as Jinja's Undefined). Errors otherwise.
  ValueList iterate() const;
};

// Python str(value): None -> "None", True -> "True", lists/dicts like repr, undefined -> "".
std::string to_str(const Value& value);
// Python repr(value) (strings quoted).
std::string to_repr(const Value& value);
// Python float repr ("1.0", "1e+20", "0.1").
std::string float_repr(double value);
// Python ==.
bool values_equal(const Value& a, const Value& b);
// Python <; fails for unordered types.
bool values_less(const Value& a, const Value& b);
// json.dumps(value, ensure_ascii=False, indent=indent (negative: none), separators default).
std::string to_json(const Value& value, int indent);
std::string kind_name(const Value& value);
// Number of UTF-8 code points.
std::size_t utf8_length(const std::string& text);

}  // namespace llama31::jinja
