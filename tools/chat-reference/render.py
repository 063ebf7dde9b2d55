#!/usr/bin/python3
"""Renders a chat template the way HF transformers does (reference for the C++ Jinja engine).

Usage: /usr/bin/python3 render.py TEMPLATE.jinja CONTEXT.json   (needs Debian's python3-jinja2)
Prints the rendered text, or exits 1 with the error message on stderr.
"""
import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


def make_environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(template_source, context):
    """Returns {"output": text} or {"error": message, "raised": True when raise_exception raised it}."""
    env = make_environment()
    try:
        return {"output": env.from_string(template_source).render(**context)}
    except Exception as error:  # noqa: BLE001 - any template failure is an expected result
        raised = type(error) is TemplateError
        return {"error": str(error), "raised": raised}


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        source = f.read()
    with open(sys.argv[2], encoding="utf-8") as f:
        context = json.load(f)
    result = render(source, context)
    if "error" in result:
        print(result["error"], file=sys.stderr)
        sys.exit(1)
    sys.stdout.write(result["output"])
