"""Typed view of a validated config: the `Cell` every stage after planning works on.

The YAML is validated against schemas/config.schema.yaml by Snakemake (defaults filled in); the checks
JSON Schema cannot express live in `ftbench.matrix`. Everything here is plain data.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, fields

CELL_PATTERN = "{model}/{strategy}/{gpus}gpu/{method}-{precision}-bs{bs}-seq{seq}"
"""The cell id; also the directory of the cell under results/<run_name>/runs/."""


class ConfigError(ValueError):
    """A config mistake; the message names the key and what is allowed."""


@dataclass(frozen=True)
class StrategyTraits:
    """What planning and tables need to know of a strategy (its code lives in ftbench.strategies)."""

    zero_stage: int | None = None
    """DeepSpeed ZeRO stage shown in the tables; None when not ZeRO."""
    data_parallel: bool = True
    """False when ranks split the model rather than the batch (pipeline): one data shard per job."""


STRATEGY_TRAITS: dict[str, StrategyTraits] = {
    "ddp": StrategyTraits(),
    "fsdp": StrategyTraits(),
    "zero1": StrategyTraits(zero_stage=1),
    "zero2": StrategyTraits(zero_stage=2),
    "zero3": StrategyTraits(zero_stage=3),
    "zero2_offload": StrategyTraits(zero_stage=2),
    "zero3_offload": StrategyTraits(zero_stage=3),
    "pipeline": StrategyTraits(data_parallel=False),
}


@dataclass(frozen=True)
class Cell:
    """One training job of the matrix."""

    model: str
    """Model name from `models[].name`."""
    strategy: str
    """Parallelism strategy (matrix.strategies)."""
    gpus: int
    """World size: GPUs, or gloo processes on CPU."""
    method: str
    """Fine-tuning method: `full` (all parameters)."""
    precision: str
    """`fp32`, or `bf16` autocast with fp32 master weights."""
    batch_size_per_gpu: int
    """Micro-batch per data-parallel rank, in samples of `seq_len` tokens."""
    seq_len: int
    """Tokens per sample (packed blocks, no padding)."""
    global_batch_size: int
    """Samples per optimizer step over all ranks."""

    @property
    def data_parallel_size(self) -> int:
        """Ranks that read different samples: every rank, or one shard for the whole pipeline."""
        return self.gpus if STRATEGY_TRAITS[self.strategy].data_parallel else 1

    @property
    def zero_stage(self) -> int | None:
        return STRATEGY_TRAITS[self.strategy].zero_stage

    @property
    def grad_accum_steps(self) -> int:
        return self.global_batch_size // (self.batch_size_per_gpu * self.data_parallel_size)

    @property
    def tokens_per_step(self) -> int:
        """Training tokens per optimizer step, each counted once for the whole job."""
        return self.global_batch_size * self.seq_len

    @property
    def id(self) -> str:
        return CELL_PATTERN.format(
            model=self.model,
            strategy=self.strategy,
            gpus=self.gpus,
            method=self.method,
            precision=self.precision,
            bs=self.batch_size_per_gpu,
            seq=self.seq_len,
        )

    def to_dict(self) -> dict:
        # the fields are plain values: no deep copy (dataclasses.asdict) needed
        return {name: getattr(self, name) for name in CELL_FIELDS}


CELL_FIELDS = tuple(f.name for f in fields(Cell))


_CELL_RE = re.compile(
    r"^(?P<model>[^/]+)/(?P<strategy>[^/]+)/(?P<gpus>\d+)gpu/"
    r"(?P<method>[^-/]+)-(?P<precision>[^-/]+)-bs(?P<bs>\d+)-seq(?P<seq>\d+)$"
)


def parse_cell_id(cell_id: str) -> dict:
    """Split a cell id into its wildcard values (strings), or raise ValueError."""
    m = _CELL_RE.match(cell_id)
    if not m:
        raise ValueError(f"not a cell id: {cell_id!r} (expected {CELL_PATTERN})")
    return m.groupdict()


def model_config(config: dict, name: str) -> dict:
    """The `models[]` entry called `name`."""
    for model in config["models"]:
        if model["name"] == name:
            return model
    raise ConfigError(f"models: no model named {name!r}")


SUMMARY_COLUMNS = (
    "cell_id",
    "model",
    "strategy",
    "gpus",
    "method",
    "precision",
    "batch_size_per_gpu",
    "seq_len",
    "status",
    "zero_stage",
    "global_batch_size",
    "grad_accum_steps",
    "run_duration_s",
    "startup_s",
    "train_time_s",
    "train_tokens_per_s",
    "train_samples_per_s",
    "step_time_p50_s",
    "step_time_p95_s",
    "inference_tokens_per_s",
    "peak_memory_gb",
    "peak_memory_kind",
    "train_loss_avg",
    "eval_loss",
    "eval_perplexity",
    "mfu_measured",
    "mfu_datasheet",
    "params_total",
    "params_trainable",
)
"""The summary's leading columns (the cell's key fields first), the ones a `report.pivots` table may name.
Here rather than in ftbench.aggregate so that checking the config never imports polars."""


MODEL_BUILD_KEYS = ("name", "source", "architecture", "tokenizer")
"""What decides a prepared model's files; batch overrides do not (they must not re-build the model)."""


def model_build_config(config: dict, name: str) -> dict:
    return {k: v for k, v in model_config(config, name).items() if k in MODEL_BUILD_KEYS}


DEFAULT_TOKENIZER = "builtin:bpe-2048"
"""The tokenizer of a `config:` model that names none."""

DOWNLOAD_KINDS = ("hf", "local")
"""Source kinds fetched by the download rules (on the submitting host), as opposed to built ones."""


def source_kind(source: str) -> str:
    """`hf`, `local`, `builtin` or `config`: the part before the first colon."""
    return source.partition(":")[0]


def is_download(source: str) -> bool:
    return source_kind(source) in DOWNLOAD_KINDS


def parse_hf(source: str) -> tuple[str, str | None]:
    """`hf:<repo_id>[@revision]` -> (repo_id, revision or None)."""
    kind, _, spec = source.partition(":")
    repo_id, _, revision = spec.partition("@")
    if kind != "hf" or not repo_id:
        raise ConfigError(f"source {source!r} is not hf:<repo_id>[@revision]")
    return repo_id, revision or None


def local_path(source: str) -> str:
    """The path of a `local:<path>` source (relative paths: to the working directory)."""
    kind, _, path = source.partition(":")
    if kind != "local" or not path:
        raise ConfigError(f"source {source!r} is not local:<path>")
    return path


def tokenizer_source(model: dict) -> str:
    """A model's tokenizer source: `tokenizer` when set, else the model's own (hf/local) or the builtin BPE."""
    if model.get("tokenizer"):
        return model["tokenizer"]
    return model["source"] if is_download(model["source"]) else DEFAULT_TOKENIZER


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def tokenizer_id(config: dict, model: dict) -> str:
    """Directory name of a model's tokenizer; models that name the same tokenizer share one token cache.

    A builtin BPE is trained on the dataset, so its id carries the dataset name. A hub tokenizer is
    `hf--<org>--<repo>[--<revision>]`; a local one `local--<dir name>-<hash of the path>`.
    """
    source = tokenizer_source(model)
    kind, _, spec = source.partition(":")
    if kind == "builtin":
        return f"{spec}-{config['dataset']['name']}"
    if kind == "hf":
        repo_id, revision = parse_hf(source)
        parts = [kind, *repo_id.split("/"), *([revision] if revision else [])]
        return "--".join(_safe(p) for p in parts)
    if kind == "local":
        path = os.path.normpath(local_path(source))
        digest = hashlib.sha256(path.encode("utf-8")).hexdigest()[:8]
        return f"local--{_safe(os.path.basename(path))}-{digest}"
    raise ConfigError(f"models[{model['name']}].tokenizer: unsupported source {source!r}")


def bpe_vocab_size(tokenizer_source: str) -> int:
    """Vocabulary size of a `builtin:bpe-<vocab>` tokenizer source."""
    m = re.fullmatch(r"builtin:bpe-(\d+)", tokenizer_source)
    if not m:
        raise ConfigError(f"tokenizer: {tokenizer_source!r} is not builtin:bpe-<vocab>")
    return int(m.group(1))


SCHEMA = "schemas/config.schema.yaml"


def validate(config: dict, workflow_dir: str = ".") -> dict:
    """Validate `config` in place against the workflow's schema (filling defaults), as the Snakefile does."""
    from pathlib import Path

    from snakemake.utils import validate as snakemake_validate

    check_config(config, workflow_dir)
    snakemake_validate(config, str(Path(workflow_dir) / SCHEMA), set_default=True)
    return config


# --- Checking a hand-edited config before anything runs ------------------------------------------------------


def load_schema(workflow_dir: str | os.PathLike = ".") -> dict:
    import yaml

    with open(os.path.join(workflow_dir, SCHEMA)) as f:
        return yaml.safe_load(f)


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
    import difflib

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
    import difflib

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
    """A `local:` dataset, model or tokenizer must exist (relative paths: to the working directory)."""
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
    if problems:
        raise ConfigError(_problems_text(problems))
