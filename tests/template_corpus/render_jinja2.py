#!/usr/bin/python3
"""Renders template corpus cases with real Jinja2 (the reference for stepflow's
engine).

Usage: render_jinja2.py CASES.json [MORE.json ...]

Each file holds a JSON array of {"name", "template", "data"}. Prints one JSON
object mapping each case name to {"output": "..."} or, when Jinja2 raises,
{"error": "<ExceptionType>: <message>"}. The environment is Jinja2's default
(autoescape off, trim_blocks/lstrip_blocks off, keep_trailing_newline off,
lenient Undefined), which is what PowerFlow's Transform operator uses.
"""
import json
import sys

import jinja2


def render_all(paths):
    env = jinja2.Environment()
    results = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            cases = json.load(f)
        for case in cases:
            name = case["name"]
            if name in results:
                raise SystemExit(f"duplicate case name {name!r} in {path}")
            try:
                out = env.from_string(case["template"]).render(case.get("data", {}))
                results[name] = {"output": out}
            except Exception as e:  # every Jinja2 failure is an expected error
                results[name] = {"error": f"{type(e).__name__}: {e}"}
    return results


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    json.dump(render_all(argv[1:]), sys.stdout, ensure_ascii=False, sort_keys=True, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
