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
"""The cell id's fixed part; also the directory of the cell under results/<run_name>/runs/. Optional fields
follow it as segments (`OPTIONAL_SEGMENTS`), only where they differ from their defaults."""


@dataclass(frozen=True)
class IdSegment:
    """An optional field of the cell id: `-<tag>-<value>`, written only when the value is not the default, so
    adding an axis leaves every existing cell id (and directory, and job spec) as it was."""

    field: str
    """The `Cell` field."""
    tag: str
    default: object
    value_re: str = r"[a-z0-9.]+"


OPTIONAL_SEGMENTS: tuple[IdSegment, ...] = (IdSegment("activation_checkpointing", "ac", "none"),)
"""Optional id segments, in the order they follow `seq<n>`. The one grammar: `Cell.id`, `parse_cell_id` and
the rules' `{options}` wildcard (`OPTIONS_WILDCARD`) are all built from it."""


def _segments_re(named: bool) -> str:
    """The optional segments as a regular expression, each value a named group (the parser) or not (the rules'
    wildcard constraint, which Snakemake wraps in a group of its own)."""
    return "".join(f"(?:-{s.tag}-({f'?P<{s.field}>' if named else '?:'}{s.value_re}))?" for s in OPTIONAL_SEGMENTS)


OPTIONS_WILDCARD = _segments_re(named=False)
"""The rules' constraint on the `{options}` wildcard after `seq{seq}` (empty for a cell at every default)."""


def optional_segments(values: dict) -> str:
    """The id's optional part for field values `values` (missing fields are at their defaults)."""
    return "".join(
        f"-{s.tag}-{values[s.field]}" for s in OPTIONAL_SEGMENTS if values.get(s.field, s.default) != s.default
    )


class ConfigError(ValueError):
    """A config mistake; the message names the key and what is allowed."""


@dataclass(frozen=True)
class StrategyTraits:
    """What planning and tables need to know of a strategy (its code lives in ftbench.strategies)."""

    zero_stage: int | None = None
    """DeepSpeed ZeRO stage shown in the tables; None when not ZeRO."""
    data_parallel: bool = True
    """False when ranks split the model rather than the batch (pipeline): one data shard per job."""
    gathers_parameters: bool = False
    """Each rank all-gathers and frees whole layers every step (FSDP, ZeRO-3): its malloc settings differ."""


STRATEGY_TRAITS: dict[str, StrategyTraits] = {
    "ddp": StrategyTraits(),
    "fsdp": StrategyTraits(gathers_parameters=True),
    "fsdp_offload": StrategyTraits(gathers_parameters=True),
    "zero1": StrategyTraits(zero_stage=1),
    "zero2": StrategyTraits(zero_stage=2),
    "zero3": StrategyTraits(zero_stage=3, gathers_parameters=True),
    "zero2_offload": StrategyTraits(zero_stage=2),
    "zero3_offload": StrategyTraits(zero_stage=3, gathers_parameters=True),
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
    activation_checkpointing: str = "none"
    """`none`, or `full`: every decoder layer's activations recomputed in backward (matrix axis)."""

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
        ) + optional_segments(self.all_fields())

    def all_fields(self) -> dict:
        # the fields are plain values: no deep copy (dataclasses.asdict) needed
        return {name: getattr(self, name) for name in CELL_FIELDS}

    def to_dict(self) -> dict:
        """The fields, optional ones only where they differ from their defaults: the job spec of a cell at
        every default is what it was before those fields existed, so a finished cell does not re-run."""
        defaults = {s.field: s.default for s in OPTIONAL_SEGMENTS}
        return {k: v for k, v in self.all_fields().items() if k not in defaults or v != defaults[k]}


CELL_FIELDS = tuple(f.name for f in fields(Cell))


_CELL_RE = re.compile(
    r"^(?P<model>[^/]+)/(?P<strategy>[^/]+)/(?P<gpus>\d+)gpu/"
    r"(?P<method>[^-/]+)-(?P<precision>[^-/]+)-bs(?P<bs>\d+)-seq(?P<seq>\d+)" + _segments_re(named=True) + "$"
)


def parse_cell_id(cell_id: str) -> dict:
    """Split a cell id into its wildcard values (strings; optional fields at their defaults where absent),
    or raise ValueError."""
    m = _CELL_RE.match(cell_id)
    if not m:
        raise ValueError(f"not a cell id: {cell_id!r} (expected {CELL_PATTERN}[optional -<tag>-<value> segments])")
    parts = m.groupdict()
    for s in OPTIONAL_SEGMENTS:
        parts[s.field] = parts[s.field] or s.default
    return parts


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
    "setup_peak_memory_gb",
    "train_peak_memory_gb",
    "activation_checkpointing",
    "hfu_measured",
)
"""The summary's leading columns (the cell's key fields first), the ones a `report.pivots` table may name.
Here rather than in ftbench.aggregate so that checking the config never imports polars."""


def cell_timeout_s(config: dict, name: str) -> int:
    """The wall-time limit of model `name`'s cells: its own `cell_timeout_s`, else `limits.cell_timeout_s`."""
    return model_config(config, name).get("cell_timeout_s", config["limits"]["cell_timeout_s"])


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
