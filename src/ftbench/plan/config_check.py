"""Checking a hand-edited config before anything runs: every mistake by its key path, with what is allowed
(unknown keys get the nearest valid one), then Snakemake's own validation fills in the defaults."""

from __future__ import annotations

import difflib
import os
import re

from ftbench.errors import ConfigError
from ftbench.plan.config import local_path
from ftbench.plan.model_shape import shape_file

SCHEMA = "schemas/config.schema.yaml"


def validate(config: dict, workflow_dir: str = ".") -> dict:
    """Validate `config` in place against the workflow's schema (filling defaults), as the Snakefile does."""
    from pathlib import Path

    from snakemake.utils import validate as snakemake_validate

    check_config(config, workflow_dir)
    snakemake_validate(config, str(Path(workflow_dir) / SCHEMA), set_default=True)
    return config


def load_schema(workflow_dir: str | os.PathLike = ".") -> dict:
    import yaml

    with open(os.path.join(workflow_dir, SCHEMA)) as f:
        # libyaml's loader where PyYAML has it: every snakemake invocation reads the schema
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def key_path(parts) -> str:
    """`('matrix', 'gpus', 0)` -> `matrix.gpus[0]`; the empty path is the top level."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "config"


def _resolve(schema: dict, node: dict) -> dict:
    """A schema node with its local `$ref` (`#/$defs/...`) followed, siblings kept."""
    while "$ref" in node:
        target = schema
        for name in node["$ref"].removeprefix("#/").split("/"):
            target = target[name]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def unknown_keys(config, schema: dict, node: dict | None = None, path: tuple = ()) -> list[str]:
    """Every key the schema does not know (a typo, mostly), by its full path, with the nearest valid key."""

    node = _resolve(schema, schema if node is None else node)
    problems = []
    if isinstance(config, dict) and "properties" in node:
        known = list(node["properties"])
        for key, value in config.items():
            if key in node["properties"]:
                problems += unknown_keys(value, schema, node["properties"][key], (*path, key))
            elif node.get("additionalProperties") is False:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                where = key_path(path) if path else "the top level"
                problems.append(f"{key_path((*path, str(key)))}: unknown key; {hint}{where} takes {', '.join(known)}")
    elif isinstance(config, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(config):
            problems += unknown_keys(item, schema, node["items"], (*path, i))
    return problems


def hf_source_problem(source: str) -> str | None:
    """Why `hf:<repo_id>[@revision]` is malformed, in words (None: it is well formed)."""
    spec = source.removeprefix("hf:")
    repo_id, at, revision = spec.partition("@")
    if not repo_id:
        return "the repo id is empty (hf:<org>/<name>)"
    parts = repo_id.split("/")
    if len(parts) > 2:
        return f"repo id {repo_id!r} has {len(parts)} parts; a hub repo id is <name> or <org>/<name>"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", parts[0]) or not all(
        re.fullmatch(r"[A-Za-z0-9._-]+", p) for p in parts[1:]
    ):
        return f"repo id {repo_id!r} may hold only letters, digits, '.', '_', '-' and one '/'"
    if at and (not revision or re.search(r"[@\s]", revision)):
        return f"revision {revision!r} after '@' is empty or holds '@' or spaces (hf:<org>/<name>@<branch|tag|commit>)"
    return None


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "a list",
    dict: "a mapping",
    type(None): "empty (null)",
}


def _schema_message(error) -> str | None:
    """One jsonschema error in words, naming the key path and what is allowed (None: reported elsewhere)."""

    path = key_path(error.absolute_path)
    value, expected, kind = error.instance, error.validator_value, error.validator
    schema = error.schema
    if kind == "additionalProperties" and expected is False:
        return None  # unknown_keys names them, with a suggestion
    if kind == "required":
        missing = [k for k in expected if isinstance(value, dict) and k not in value]
        prefix = f"{path}." if error.absolute_path else ""
        return "; ".join(
            f"{prefix}{k}: missing; {path if error.absolute_path else 'the top level'} needs {', '.join(expected)}"
            for k in missing
        )
    if kind == "enum":
        by_lower = {str(e).lower(): str(e) for e in expected}  # `1f1b` is nearest to `1F1B`
        close = difflib.get_close_matches(str(value).lower(), list(by_lower), n=1)
        hint = f" (did you mean {by_lower[close[0]]!r}?)" if close else ""
        return f"{path}: {value!r} is not allowed{hint}; use one of {', '.join(map(str, expected))}"
    if kind == "type":
        types = expected if isinstance(expected, list) else [expected]
        wanted = " or ".join(
            {
                "integer": "an integer",
                "number": "a number",
                "array": "a list",
                "object": "a mapping",
                "string": "a string",
                "boolean": "true/false",
                "null": "null",
            }.get(t, t)
            for t in types
        )
        got = _TYPE_NAMES.get(type(value), type(value).__name__)
        quoted = " (drop the quotes)" if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value) else ""
        return f"{path}: {value!r} is {got}, it must be {wanted}{quoted}"
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        words = {
            "minimum": f"at least {expected}",
            "exclusiveMinimum": f"above {expected}",
            "maximum": f"at most {expected}",
            "exclusiveMaximum": f"below {expected}",
        }
        return f"{path}: {value!r} is out of range; it must be {words[kind]}"
    if kind == "pattern":
        what = schema.get("x-expected", f"matching {expected}")
        why = hf_source_problem(value) if isinstance(value, str) and value.startswith("hf:") else None
        return f"{path}: {value!r} is not {what}" + (f"; {why}" if why else "")
    if kind == "minItems":
        return f"{path}: needs at least {expected} item(s), got {len(value)}"
    if kind == "minLength":
        return f"{path}: must not be empty"
    if kind == "uniqueItems":
        return f"{path}: {value!r} lists a value twice; each may appear once"
    return f"{path}: {error.message}"


def _strict_validator(schema: dict):
    """The schema's validator, with `integer` meaning an int (JSON Schema takes 2.0, which a cell id cannot)."""
    import jsonschema

    base = jsonschema.validators.validator_for(schema)
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    return jsonschema.validators.extend(base, type_checker=checker)(schema)


def check_config(config: dict, workflow_dir: str | os.PathLike = ".") -> None:
    """Refuse a malformed config with every problem by its key path and what is allowed: unknown keys (with
    the nearest valid key), then the schema's checks in words. Runs on the config as written, before
    Snakemake's own validation fills in the defaults."""
    schema = load_schema(workflow_dir)
    if not isinstance(config, dict):
        raise ConfigError(f"config: the file must be a mapping of keys, got {_TYPE_NAMES.get(type(config), config)}")
    problems = unknown_keys(config, schema)
    errors = sorted(_strict_validator(schema).iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        message = _schema_message(error)
        if message and message not in problems:
            problems.append(message)
    if problems:
        raise ConfigError(_problems_text(problems))


def _problems_text(problems: list[str]) -> str:
    if len(problems) == 1:
        return f"config: {problems[0]}"
    return f"config: {len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)


def check_local_sources(config: dict) -> None:
    """A `local:` dataset, model, tokenizer or shape must exist (relative paths: to the working directory)."""
    problems = []
    source = config["dataset"]["source"]
    if source.startswith("local:") and not os.path.exists(local_path(source)):
        problems.append(f"dataset.source: {source!r}: {os.path.abspath(local_path(source))} does not exist")
    for i, model in enumerate(config["models"]):
        for key in ("source", "tokenizer"):
            source = model.get(key) or ""
            if source.startswith("local:") and not os.path.isdir(local_path(source)):
                path = os.path.abspath(local_path(source))
                what = "is not a directory" if os.path.exists(path) else "does not exist"
                problems.append(
                    f"models[{i}].{key} ({model['name']}): {source!r}: {path} {what}; a local model or tokenizer "
                    "is a Hugging Face format directory"
                )
        if model.get("shape"):
            path = shape_file(model)
            if not os.path.isfile(path):
                problems.append(
                    f"models[{i}].shape ({model['name']}): {model['shape']!r}: {os.path.abspath(path)} does not exist; "
                    "shape names a Hugging Face config.json, or a directory holding one"
                )
    if problems:
        raise ConfigError(_problems_text(problems))
