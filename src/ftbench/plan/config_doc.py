"""docs/configuration.md's table of keys, generated from schemas/config.schema.yaml, so the schema's
descriptions are the only ones: `python -m ftbench.plan.config_doc` rewrites the table between its markers,
and a test fails when the page and the schema differ."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from ftbench.files import atomic_write_text

REPO = Path(__file__).resolve().parents[3]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
PAGE = REPO / "docs" / "configuration.md"
BEGIN, END = "<!-- ftbench:config-keys:begin -->", "<!-- ftbench:config-keys:end -->"


def _resolve(node: dict, defs: dict) -> dict:
    """A node with its $ref's keys under its own (a key beside a $ref wins, as in the schema's use)."""
    if "$ref" in node:
        target = _resolve(defs[node["$ref"].rsplit("/", 1)[1]], defs)
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _allowed(node: dict) -> str:
    if "enum" in node:
        return ", ".join(f"`{v}`" for v in node["enum"])
    if "x-expected" in node:
        return node["x-expected"]
    bounds = {"minimum": "≥", "exclusiveMinimum": ">", "exclusiveMaximum": "<", "maximum": "≤"}
    limits = [f"{sign} {node[key]}" for key, sign in bounds.items() if key in node]
    kind = node.get("type", "")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    return " ".join([kind, *limits]).strip()


def _default(value) -> str:
    return value.encode("unicode_escape").decode() if isinstance(value, str) else json.dumps(value)


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def rows(node: dict, defs: dict, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, allowed, default, description) for every key under `node`, parents before their children."""
    out = []
    for name, child in node.get("properties", {}).items():
        child = _resolve(child, defs)
        key = f"{prefix}{name}"
        items = _resolve(child.get("items", {}), defs) if child.get("type") == "array" else {}
        if child.get("properties"):
            if "description" in child:
                out.append((f"`{key}`", "object", "", _cell(child["description"])))
            out += rows(child, defs, f"{key}.")
        elif items.get("properties"):
            out.append((f"`{key}[]`", "list of objects", "", _cell(child.get("description", ""))))
            out += rows(items, defs, f"{key}[].")
        else:
            allowed = f"list of {_allowed(items)}" if items else _allowed(child)
            default = f"`{_cell(_default(child['default']))}`" if "default" in child else ""
            out.append((f"`{key}`", _cell(allowed), default, _cell(child.get("description", ""))))
    return out


def render(schema: dict) -> str:
    lines = ["| key | allowed | default | meaning |", "|---|---|---|---|"]
    lines += [f"| {k} | {a} | {d} | {m} |" for k, a, d, m in rows(schema, schema.get("$defs", {}))]
    return "\n".join(lines) + "\n"


def rewrite(page: Path = PAGE, schema_path: Path = SCHEMA) -> bool:
    """Put the schema's table between the page's markers; True when the page changed."""
    text = page.read_text()
    head, rest = text.split(BEGIN + "\n", 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{render(yaml.safe_load(schema_path.read_text()))}{END}{tail}"
    if new != text:
        atomic_write_text(page, new)
    return new != text


if __name__ == "__main__":
    print(f"{PAGE}: {'rewritten' if rewrite() else 'current'}")
    sys.exit(0)
