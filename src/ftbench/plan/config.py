"""Reading a validated config: models, sources, tokenizers and limits by name.

The YAML is validated against schemas/config.schema.yaml by Snakemake (defaults filled in); the checks
JSON Schema cannot express live in `ftbench.plan.matrix`. Everything here is plain data.
"""

from __future__ import annotations

import hashlib
import os
import re

from ftbench.cell import AXES, Axis
from ftbench.errors import ConfigError


def model_config(config: dict, name: str) -> dict:
    """The `models[]` entry called `name`."""
    for model in config["models"]:
        if model["name"] == name:
            return model
    raise ConfigError(f"models: no model named {name!r}")


METRIC_COLUMNS = (
    "status",
    "stale",
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
    "setup_peak_memory_gb",
    "train_peak_memory_gb",
    "hfu_measured",
    "estimated_memory_gb",
    "estimate_error",
    "cost_per_million_train_tokens",
    "run_cost",
    "train_energy_j_per_token",
    "epoch_s",
    "eval_tokens_per_s",
    "prefill_s",
    "decode_latency_per_token_s",
    "train_samples_per_s_per_gpu",
    "eval_samples_per_s",
    "spec_hash",
)
"""The summary's columns after the cell's key (its id and axes), in that order."""


def summary_columns(axes: tuple[Axis, ...] = AXES) -> tuple[str, ...]:
    """The summary's leading columns, the ones a `report.pivots` table may name: the cell id, its axes, then
    `METRIC_COLUMNS`. Here rather than in ftbench.report.aggregate so that checking the config never imports
    polars."""
    return ("cell_id", *(a.field for a in axes), *METRIC_COLUMNS)


SUMMARY_COLUMNS = summary_columns()


def cell_timeout_s(config: dict, name: str) -> int:
    """The wall-time limit of model `name`'s cells: its own `cell_timeout_s`, else `limits.cell_timeout_s`."""
    return model_config(config, name).get("cell_timeout_s", config["limits"]["cell_timeout_s"])


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
