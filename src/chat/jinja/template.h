// A Jinja2 template engine for chat templates (HF transformers' setup: ImmutableSandboxedEnvironment with
// trim_blocks and lstrip_blocks on, loopcontrols, globals raise_exception / strftime_now / range / namespace,
// tojson as json.dumps(ensure_ascii=False)). Written here because no maintained C++ Jinja engine is packaged in
// Debian 12 (apt-cache search finds only Python ones). Sandboxed: templates reach no files, environment or
// processes; loops (100k iterations per render) and macro recursion (depth 100) are bounded.
#pragma once

#include "chat/jinja/ast.h"

#include <nlohmann/json.hpp>

#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace llama31::jinja {

struct RenderLimits {
  std::size_t max_loop_iterations = 100000;  // total over the whole render
  int max_call_depth = 100;                  // macro recursion
  std::size_t max_output_bytes = 64u << 20;
};

class JinjaTemplate {
 public:
  // Errors: llama31::Error "NAME:LINE:COL: message" for syntax errors.
  static JinjaTemplate parse(std::string_view source, std::string name);

  // Renders with the context's top-level keys as variables. raise_exception(msg) throws llama31::Error(msg).
  // Note: nlohmann::json sorts object keys; pass nlohmann::ordered_json to keep insertion order.
  std::string render(const nlohmann::json& context) const;
  std::string render(const nlohmann::ordered_json& context) const;
  std::string render_values(const ValueDict& variables) const;

  // The clock strftime_now reads (tests inject a fixed one); defaults to the local time.
  void set_clock(std::function<std::tm()> clock) { clock_ = std::move(clock); }
  void set_limits(const RenderLimits& limits) { limits_ = limits; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::shared_ptr<const NodeList> nodes_;
  std::function<std::tm()> clock_;
  RenderLimits limits_;
};

}  // namespace llama31::jinja

namespace llama31 {
using jinja::JinjaTemplate;
}
