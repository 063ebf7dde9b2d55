// Rendering chat conversations through a Jinja chat template (HF transformers' apply_chat_template setup).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace llama31 {

// Renders template_source with the variables messages, tools (omitted when null), add_generation_prompt,
// bos_token, plus every key of extra (builtin_tools, date_string, tools_in_user_message, ...).
// Validates input first: messages must be an array of objects whose role is system/user/assistant/ipython/tool;
// tools must be null or an array; extra must be null or an object; every string must be valid UTF-8.
// Errors (llama31::Error): invalid input (naming the message index / field), template syntax errors
// ("chat_template:LINE:COL: ..."), raise_exception(msg) from the template (the message), runaway loops or
// recursion (bounded by the engine).
// Objects keep their key order (ordered_json), as Python dicts do: a tool schema renders with its
// properties in the order the client sent them, byte-exact with transformers.
std::string render_chat(const std::string& template_source, const nlohmann::ordered_json& messages,
                        const nlohmann::ordered_json& tools, bool add_generation_prompt,
                        const nlohmann::ordered_json& extra, std::string bos_token);

// The official Llama 3.1 Instruct chat template: the chat_template of the bundled
// LLAMA31_DATA_DIR/llama-3.1-tokenizer/tokenizer_config.json, read on first use.
std::string official_llama31_template();

}  // namespace llama31
