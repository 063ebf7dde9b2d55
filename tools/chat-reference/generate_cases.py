#!/usr/bin/python3
"""Writes tests/data/chat/cases.json: conversations rendered through every template in tests/data/chat/templates
by the Python Jinja2 reference (render.py). Run with Debian's /usr/bin/python3 (python3-jinja2 3.1.2).

Contexts are stored with sorted keys (nlohmann::json, used by the C++ side, orders object keys), and rendered
from that same sorted form so both sides see identical dict order. date_string is always given so that
strftime_now is never reached and the output is deterministic.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from render import render  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATES = os.path.join(ROOT, "tests", "data", "chat", "templates")

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get the weather in a city",
           "parameters": {"type": "object", "properties": {
               "city": {"type": "string", "description": "City name"},
               "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
SEARCH = {"type": "function", "function": {"name": "search_docs", "description": "Search \"docs\" \u2014 fast",
          "parameters": {"type": "object", "properties": {"query": {"type": "string"},
                                                         "limit": {"type": "integer", "default": 5}},
                         "required": ["query"]}}}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def system(text):
    return {"role": "system", "content": text}


def call(name, arguments, call_id="call00001"):
    return {"role": "assistant", "content": "", "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]}


def conversations():
    cases = []

    def add(name, messages, tools=None, add_generation_prompt=True, **extra):
        context = {"messages": messages, "add_generation_prompt": add_generation_prompt,
                   "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "date_string": "26 Jul 2024"}
        if tools is not None:
            context["tools"] = tools
        context.update(extra)
        cases.append((name, context))

    add("single_user", [user("Hello!")])
    add("single_user_no_prompt", [user("Hello!")], add_generation_prompt=False)
    add("system_user", [system("You are a helpful assistant."), user("Hi")])
    add("system_trimmed", [system("  padded system  \n"), user("  padded user \n")])
    add("multi_turn", [system("Be brief."), user("What is 2+2?"), assistant("4"), user("And 3+3?")])
    add("multi_turn_no_system", [user("a"), assistant("b"), user("c"), assistant("d"), user("e")])
    add("ends_with_assistant", [user("Say hi"), assistant("hi")], add_generation_prompt=False)
    add("unicode", [user("h\u00e9llo w\u00f6rld \u4f60\u597d \U0001F600"), assistant("\u00e7a va \u2603")])
    add("json_escapes", [user("quote \" backslash \\ tab \t newline \n control \u0001 end")])
    add("empty_content", [user("")])
    add("custom_tools", [user("Weather in Paris?")], tools=[WEATHER])
    add("custom_tools_two", [system("Use tools."), user("Find docs on ropes")], tools=[WEATHER, SEARCH])
    add("custom_tools_no_prompt", [user("Weather?")], tools=[WEATHER], add_generation_prompt=False)
    add("tools_not_in_user", [user("Weather in Rome?")], tools=[WEATHER], tools_in_user_message=False)
    add("builtin_tools", [system("You are helpful."), user("Search the news")],
        builtin_tools=["brave_search", "wolfram_alpha"])
    add("builtin_code_interpreter", [user("Compute pi")], builtin_tools=["code_interpreter"])
    add("builtin_all", [user("Go")], builtin_tools=["brave_search", "wolfram_alpha", "code_interpreter"])
    add("builtin_and_custom", [user("Go")], tools=[WEATHER], builtin_tools=["brave_search"])
    add("custom_date", [user("What day is it?")], date_string="01 Jan 2030")
    add("tool_call_and_result", [user("Weather in Paris?"), call("get_weather", {"city": "Paris"}),
                                 {"role": "tool", "tool_call_id": "call00001", "content": "{\"temp\": 21}"}],
        tools=[WEATHER])
    add("tool_call_nested_args", [user("x"), call("search_docs", {"query": "q \"x\"", "limit": 3,
                                                                  "filters": {"tags": ["a", "\u00e9"], "exact": True, "score": 0.5}})],
        tools=[SEARCH], add_generation_prompt=False)
    add("ipython_result", [user("Compute"), assistant("<|python_tag|>print(1)"),
                           {"role": "ipython", "content": "1"}], builtin_tools=["code_interpreter"])
    add("tool_result_dict", [user("Weather?"), call("get_weather", {"city": "Oslo"}),
                             {"role": "tool", "tool_call_id": "call00001", "content": {"temp": -3, "sky": "snow"}}],
        tools=[WEATHER])
    add("tool_full_cycle", [system("sys"), user("Weather?"), call("get_weather", {"city": "Oslo", "unit": "celsius"}),
                            {"role": "tool", "tool_call_id": "call00001", "content": "cold"},
                            assistant("It is cold."), user("Thanks")], tools=[WEATHER])
    add("two_tool_calls", [user("Both"), {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call00001", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "A"}}},
        {"id": "call00002", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "B"}}}]}],
        tools=[WEATHER])
    add("system_only", [system("Only a system message.")])
    add("long_multi_turn", [user("q%d" % i) if i % 2 == 0 else assistant("a%d" % i) for i in range(11)])
    add("system_with_tools", [system("Custom system prompt."), user("Weather?")], tools=[WEATHER, SEARCH])
    add("no_bos", [user("hi")], bos_token="")
    add("content_list", [{"role": "user", "content": [{"type": "text", "text": "part one"}]}])
    add("newlines_in_content", [user("line1\n\nline2\n"), assistant("  reply with spaces  ")])
    add("assistant_first", [assistant("I start."), user("ok")])
    add("user_after_user", [user("one"), user("two")])
    add("empty_messages", [])
    add("tools_empty_list", [user("hi")], tools=[])
    return cases


def sort_keys(value):
    return json.loads(json.dumps(value, sort_keys=True))


def main():
    out = []
    for template_name in sorted(os.listdir(TEMPLATES)):
        if not template_name.endswith(".jinja"):
            continue
        with open(os.path.join(TEMPLATES, template_name), encoding="utf-8") as f:
            source = f.read()
        for case_name, context in conversations():
            context = sort_keys(context)
            result = render(source, context)
            entry = {"template": template_name, "name": case_name, "context": context}
            entry.update(result)
            out.append(entry)
    path = os.path.join(ROOT, "tests", "data", "chat", "cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")
    errors = sum(1 for e in out if "error" in e)
    print("wrote %d cases (%d errors) to %s" % (len(out), errors, path))


if __name__ == "__main__":
    main()
