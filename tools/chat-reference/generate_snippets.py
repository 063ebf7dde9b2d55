#!/usr/bin/python3
"""Writes tests/data/chat/jinja_snippets.json: small templates exercising single Jinja features, rendered by
the Python reference (render.py, transformers' setup). Run with Debian's /usr/bin/python3."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from render import render  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONTEXT = {"items": ["a", "b", "c"], "nums": [3, 1, 2], "d": {"x": 1, "y": [1, 2], "z": None},
           "text": "  Hello World  ", "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                                              {"role": "user", "content": "bye"}],
           "f": 1.5, "n": 7, "empty": [], "flag": True, "uni": "h\u00e9 \u4f60"}
# The C++ side reads the context with nlohmann::json, which orders keys: render from the same order.
CONTEXT = json.loads(json.dumps(CONTEXT, sort_keys=True))

SNIPPETS = [
    "{{ 'x' }} {{ 1 }} {{ 1.0 }} {{ 2.50 }} {{ none }} {{ true }} {{ false }} {{ undefined_thing }}|",
    "{{ items }} {{ d }} {{ nums }} {{ [1, 'a', none, true, 1.5] }} {{ {'k': 'it\\'s'} }}",
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }}",
    "{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' + 'cd' }} {{ 'ab' * 3 }} {{ [1] + [2] }}",
    "{{ 1 < 2 < 3 }} {{ 1 == 1.0 }} {{ 'a' in 'cat' }} {{ 'q' not in items }} {{ 'x' in d }} {{ 2 in nums }}",
    "{{ items[0] }}{{ items[-1] }}{{ items[1:] }}{{ items[::-1] }}{{ items[:2] }}{{ nums[::2] }}{{ 'hello'[1:3] }}{{ 'abc'[::-1] }}",
    "{% for x in items %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ x }};{% endfor %}",
    "{% for x in empty %}no{% else %}empty{% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}",
    "{% for k, v in d|items %}{{ k }}={{ v }},{% endfor %}",
    "{% for m in msgs if m.role == 'user' %}{{ loop.index }}:{{ m.content }} {% endfor %}",
    "{% for x in nums %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "{% set ns = namespace(count=0, found=false) %}{% for x in nums %}{% set ns.count = ns.count + x %}{% endfor %}{{ ns.count }} {{ ns.found }}",
    "{% set y = 5 %}{% for x in items %}{% set y = x %}{% endfor %}{{ y }}",
    "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Bob') }} {{ greet('Al', greeting='Hi') }} {{ greet('Z', 'Yo') }}",
    "{% if n > 10 %}big{% elif n > 5 %}mid{% else %}small{% endif %}",
    "{{ 'yes' if flag else 'no' }} {{ 'y' if not flag else 'n' }} [{{ 'v' if false }}]",
    "{{ text|trim }}|{{ text.strip() }}|{{ text.lstrip() }}|{{ text.rstrip() }}|{{ 'xxhixx'.strip('x') }}|{{ text|upper }}|{{ text|lower }}",
    "{{ 'hello world'|title }} {{ 'hELLO'|capitalize }} {{ 'a-b-c'.split('-') }} {{ ' a  b '.split() }} {{ 'abc'.startswith('ab') }} {{ 'abc'.endswith('x') }}",
    "{{ 'aaa'|replace('a', 'b') }} {{ 'aaa'.replace('a', 'c') }} {{ items|join(', ') }} {{ items|length }} {{ uni|length }} {{ d|length }} {{ items|count }}",
    "{{ items|first }} {{ items|last }} {{ nums|list }} {{ 'abc'|list }} {{ n|string }} {{ '42'|int + 1 }} {{ '2.5'|float }} {{ -3|abs }} {{ 2.567|round(2) }} {{ 2.5|round }}",
    "{{ [1, 2, 1, 3]|unique|list }} {{ undefined_x|default('dflt') }} {{ ''|default('e', true) }} {{ none|default('n') }} {{ 'x'|d('y') }}",
    "{{ msgs|selectattr('role', 'equalto', 'user')|list|length }} {{ msgs|rejectattr('role', 'equalto', 'user')|map(attribute='content')|list }}",
    "{{ nums|select('odd')|list }} {{ nums|reject('even')|list }} {{ items|reject('equalto', 'b')|join(',') }} {{ ['A', 'B']|map('lower')|join }}",
    "{{ msgs|selectattr('name', 'defined')|list }} {{ msgs|rejectattr('name', 'defined')|list|length }} {{ msgs|selectattr('role')|list|length }}",
    "{{ d|tojson }} {{ items|tojson }} {{ uni|tojson }} {{ 'q\"\\\\\\n\\t'|tojson }} {{ f|tojson }} {{ none|tojson }} {{ flag|tojson }}",
    "{{ d|tojson(indent=4) }}\n{{ msgs|tojson(indent=2) }}\n{{ empty|tojson(indent=2) }} {{ {}|tojson(indent=2) }}",
    "{{ n is odd }} {{ n is even }} {{ n is number }} {{ n is integer }} {{ f is float }} {{ 'x' is string }} {{ d is mapping }} {{ items is iterable }} {{ items is sequence }}",
    "{{ none is none }} {{ nope is defined }} {{ nope is undefined }} {{ flag is true }} {{ flag is false }} {{ flag is boolean }} {{ n is not none }} {{ 'a' is equalto 'a' }}",
    "{{ d.get('x') }} {{ d.get('missing', 'fallback') }} {{ d.keys()|list }} {{ d.values()|list }} {{ d['y'][1] }} {{ d.y }} {{ d.z }} {{ d.nope }}|",
    "{{ range(3)|list }} {{ range(1, 7, 2)|list }} {% for i in range(2) %}{{ i }}{% endfor %}",
    "{{ 'HeLLo'.upper() }} {{ 'HeLLo'.lower() }} {{ 'ab cd'.title() }} {{ '%s' }}",
    "a\n  {% if true %}\n  b\n  {% endif %}\nc\n{# comment #}\nd {{- ' e ' -}} f\n   {%- if true -%}  g  {%- endif %}\nh",
    "{%- for m in msgs -%}\n    {{- m.role + ': ' + m.content }}\n{% endfor -%}\nend",
    "{% set captured %}inner {{ n }}{% endset %}[{{ captured }}]",
    "{{ 'line1\\nline2\\n\\nline3'|indent(2) }}|{{ 'a\\nb'|indent(4, true) }}",
    "{{ (1, 2) }} {{ 1e3 }} {{ 0.1 + 0.2 }} {{ 1/3 }} {{ 10 / 2 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 3 * 1.0 }}",
    "{{ raise_exception('custom failure: ' ~ n) }}",
    "{{ msgs[0]['content'] }} {{ msgs[1].role }} {{ msgs|map(attribute='role')|join('/') }}",
    "{% set a, b = [1, 2] %}{{ a }}{{ b }} {{ not flag }} {{ flag and 'x' }} {{ none or 'y' }} {{ -n }} {{ +n }}",
    "{{ nums|sort if false else 'skip' }} {{ 'abc' if 'b' in 'abc' }}",
    "x  {% if true %}same line{% endif %}  y\n    {# lstripped comment #}\nz\n  {%+ if true %}kept{% endif %}\n",
    "{% raw %}{{ not rendered }}{% endraw %} after\n{% if true +%}\nnewline kept\n{% endif %}",
    "{% for m in msgs %}{% if loop.first %}[{% endif %}{{ m.role }}{% if not loop.last %},{% else %}]{% endif %}{% endfor %}",
    "{% for x in items %}{{ loop.previtem|default('-') }}{{ x }}{{ loop.nextitem|default('-') }} {{ loop.cycle('o', 'e') }};{% endfor %}",
    "{% macro outer(x) %}<{{ inner(x) }}>{% endmacro %}{% macro inner(y) %}{{ y * 2 }}{% endmacro %}{{ outer(4) }}",
    "{%- set sys = msgs[0]['content'] if msgs[0]['role'] == 'system' else '' -%}[{{ sys }}]{{ msgs[1:]|length }}",
    "{{ d['y']|tojson }} {{ [d]|tojson(indent=1) }} {{ {'a': [], 'b': {}, 'c': [{}]}|tojson(indent=2) }}",
    "{{ 'x' is in 'xyz' }} {{ 3 is divisibleby 3 }} {{ 'abc' is lower }} {{ n is ge 7 }} {{ 2 is lt 3 }}",
    "{{ items|join }} {{ nums|sum }} {{ d|dictsort }} {{ msgs|map(attribute='role')|unique|list }}",
    "{{ undefined_obj.attr }}",
    "{% for x in 5 %}{% endfor %}",
    "{{ 1 + 'a' }}",
    "{{ (-1) ** 3 }} {{ (-1) ** 4 }} {{ 0 ** 0 }} {{ 2 ** 62 }} {{ (-2) ** 3 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }}",
    "{{ 'é' ~ uni[0] ~ uni[-1] ~ uni[1:3] }}",
]


def main():
    out = []
    for source in SNIPPETS:
        entry = {"template": source}
        entry.update(render(source, CONTEXT))
        out.append(entry)
    path = os.path.join(ROOT, "tests", "data", "chat", "jinja_snippets.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"context": CONTEXT, "cases": out}, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote %d snippets (%d errors)" % (len(out), sum("error" in e for e in out)))


if __name__ == "__main__":
    main()
