// Filters, tests and value methods of the Jinja engine.
#pragma once

#include "chat/jinja/value.h"

#include <functional>
#include <string>

namespace llama31::jinja {

// Calls a filter that was applied through apply_filter (used by map('filter') and select/reject tests).
using TestRunner = std::function<bool(const std::string& test, const Value& value, CallArgs& args)>;

Value apply_filter(const std::string& name, const Value& input, CallArgs& args, const TestRunner& run_test);
bool apply_test(const std::string& name, const Value& value, CallArgs& args);
// obj.attr: dict item or method (items/keys/values/get), string method, or undefined.
Value get_attribute(const Value& object, const std::string& name);
// obj[key]: dict item, list index (negative allowed), string character, or undefined.
Value get_item(const Value& object, const Value& key);
Value slice_value(const Value& object, const Value& start, const Value& stop, const Value& step);

}  // namespace llama31::jinja
