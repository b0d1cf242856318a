"""Expand the config's matrix into cells, prune impossible ones with a reason, check the rest.

`plan(config)` is the single source of truth for what the workflow runs: the Snakefile's targets, the
dry-run listing and the tests all call it.
"""

from __future__ import annotations

import fnmatch
import itertools
from dataclasses import dataclass, field

from ftbench.config import (
    STRATEGY_TRAITS,
    SUMMARY_COLUMNS,
    Cell,
    ConfigError,
    bpe_vocab_size,
    source_kind,
    tokenizer_source,
)
from ftbench.slurm import geometry


@dataclass
class Plan:
    cells: list[Cell] = field(default_factory=list)
    pruned: list[tuple[Cell, str]] = field(default_factory=list)
    """Cells left out on purpose, each with its reason."""
    selected: list[Cell] = field(default_factory=list)
    """The cells this invocation runs (config `select`); the others keep what is on disk."""


def _prune_reason(cell: Cell, num_layers: int | None) -> str | None:
    """Why a combination cannot run at all (None: it runs). Nothing else is ever pruned."""
    if cell.strategy == "pipeline" and cell.gpus == 1:
        return "pipeline needs at least 2 stages (GPUs)"
    if cell.strategy == "pipeline" and num_layers is not None and cell.gpus > num_layers:
        return f"pipeline with {cell.gpus} stages needs at least {cell.gpus} decoder layers, the model has {num_layers}"
    return None


def _check_models(config: dict) -> None:
    seen = set()
    for i, model in enumerate(config["models"]):
        name = model["name"]
        if name in seen:
            raise ConfigError(f"models[{i}].name: duplicate model name {name!r}; names must be unique")
        seen.add(name)
        if model["source"].startswith("config:"):
            arch = model.get("architecture")
            if arch is None:
                raise ConfigError(
                    f"models[{i}] ({name}): source {model['source']!r} needs an `architecture` "
                    "(hidden_size, num_layers, num_heads, intermediate_size)"
                )
            if arch["hidden_size"] % arch["num_heads"]:
                raise ConfigError(
                    f"models[{i}].architecture ({name}): hidden_size {arch['hidden_size']} is not "
                    f"divisible by num_heads {arch['num_heads']}"
                )
        elif "architecture" in model:
            raise ConfigError(
                f"models[{i}].architecture ({name}): only config: sources take one; {model['source']!r} "
                "brings its own config.json"
            )
        tokenizer = tokenizer_source(model)
        if source_kind(tokenizer) == "builtin":
            vocab = bpe_vocab_size(tokenizer)
            if not 300 <= vocab <= 1_000_000:
                raise ConfigError(f"models[{i}].tokenizer ({name}): vocab {vocab} must be in 300..1000000")


def _global_batch(config: dict, model: dict, strategy: str, gpus: int, bs: int) -> int:
    """The global batch of a cell, checked to divide into micro-batches x data-parallel ranks.

    Unset, it is batch_size_per_gpu x GPUs for every strategy (for pipeline: one micro-batch per stage),
    so strategies at the same GPU count train on the same tokens."""
    gbs = model.get("global_batch_size", config.get("global_batch_size"))
    if gbs is None:
        return bs * gpus
    dp = gpus if STRATEGY_TRAITS[strategy].data_parallel else 1
    if gbs % (bs * dp):
        raise ConfigError(
            f"global_batch_size: {gbs} for model {model['name']!r} with {strategy} at {gpus} GPU(s) is not a "
            f"multiple of batch_size_per_gpu x data-parallel ranks = {bs} x {dp}; gradient accumulation needs an "
            "exact division"
        )
    return gbs


def plan(config: dict) -> Plan:
    """Every cell of the matrix, in a stable order (model, strategy, gpus, method, precision, seq_len)."""
    _check_models(config)
    matrix = config["matrix"]
    gpus_per_node = config.get("hardware", {}).get("gpus_per_node", 8)
    result = Plan()
    for model in config["models"]:
        bs = model.get("batch_size_per_gpu", config["batch_size_per_gpu"])
        max_pos = model.get("architecture", {}).get("max_positions")
        for strategy, gpus, method, precision, seq in itertools.product(
            matrix["strategies"],
            matrix["gpus"],
            matrix.get("method", ["full"]),
            matrix.get("precision", ["fp32"]),
            matrix["seq_len"],
        ):
            geometry(gpus, gpus_per_node)  # refuses a count that does not fill whole nodes
            if max_pos is not None and seq > max_pos:
                raise ConfigError(
                    f"matrix.seq_len: {seq} exceeds models[{model['name']}].architecture.max_positions={max_pos}"
                )
            cell = Cell(
                model=model["name"],
                strategy=strategy,
                gpus=gpus,
                method=method,
                precision=precision,
                batch_size_per_gpu=bs,
                seq_len=seq,
                global_batch_size=_global_batch(config, model, strategy, gpus, bs),
            )
            reason = _prune_reason(cell, model.get("architecture", {}).get("num_layers"))
            if reason:
                result.pruned.append((cell, reason))
            else:
                result.cells.append(cell)
    if not result.cells:
        raise ConfigError("matrix: every cell was pruned; nothing to run")
    patterns = config.get("select") or ["*"]
    result.selected = [c for c in result.cells if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
    if not result.selected:
        raise ConfigError(
            f"select: {patterns} match none of the {len(result.cells)} cells (ids look like {result.cells[0].id!r})"
        )
    return result


PIVOT_COLUMNS = frozenset(SUMMARY_COLUMNS)


def check_pivots(pivots: list[dict]) -> None:
    """Refuse a `report.pivots` table naming a column the summary does not have, before anything runs."""
    for i, pivot in enumerate(pivots):
        for key in ("rows", "columns", "value", "filter"):
            names = pivot.get(key) or []
            for name in [names] if isinstance(names, str) else names:
                if name not in PIVOT_COLUMNS:
                    raise ConfigError(
                        f"report.pivots[{i}].{key}: {name!r} is not a summary column; "
                        f"use one of {', '.join(sorted(PIVOT_COLUMNS))}"
                    )


def job_spec(config: dict, cell: Cell) -> dict:
    """Everything a training job needs besides its input files. It is the train rule's params, so
    changing any of it re-runs exactly the cells it touches (and nothing else does)."""
    hardware = config["hardware"]
    return {
        "run_name": config["run_name"],
        "seed": config["seed"],
        "cell": cell.to_dict(),
        "steps": config["steps"],
        "optimizer": config["optimizer"],
        "generation": config["generation"],
        "options": {k: v for k, v in config["options"].items() if k in (cell.strategy, cell.method)},
        "hardware": {"device": hardware["device"], "cpu_threads_per_rank": hardware["cpu_threads_per_rank"]},
    }
