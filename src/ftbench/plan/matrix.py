"""Expand the config's matrix into cells, prune impossible ones with a reason, check the rest.

`plan(config)` is the single source of truth for what the workflow runs: the Snakefile's targets, the
dry-run listing and the tests all call it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import os
from dataclasses import dataclass, field

from ftbench.cell import AXES, Cell
from ftbench.errors import ConfigError
from ftbench.files import read_json
from ftbench.launch.slurm import geometry
from ftbench.plan.config import SUMMARY_COLUMNS, bpe_vocab_size, source_kind, tokenizer_source
from ftbench.plan.estimate import device_capacity_gb, estimate_device, predicted_oom
from ftbench.plan.model_shape import Shape, max_positions, model_shape
from ftbench.precision import precision_of, refusal
from ftbench.registry import LAYERS, STRATEGIES


@dataclass
class Plan:
    cells: list[Cell] = field(default_factory=list)
    pruned: list[tuple[Cell, str]] = field(default_factory=list)
    """Cells left out on purpose, each with its reason."""
    selected: list[Cell] = field(default_factory=list)
    """The cells this invocation runs (config `select`); the others keep what is on disk."""

    @property
    def every_cell(self) -> list[Cell]:
        """The planned cells, then the pruned ones."""
        return [*self.cells, *(cell for cell, _ in self.pruned)]


def _prune_reason(
    cell: Cell, num_layers: int | None, shape: Shape | None, gpus_per_node: int, device: str
) -> str | None:
    """Why a combination cannot run at all (None: it runs). Besides these, only cells predicted not to fit
    are pruned, and only when limits.prune_predicted_oom asks. `device`: where its ranks run (cpu, cuda)."""
    strategy = STRATEGIES[cell.strategy]
    refused = refusal(cell.precision, cell.strategy, device)
    if refused:
        return refused
    stages = LAYERS in strategy.shards
    if cell.gpus < strategy.min_gpus:
        return f"{cell.strategy} needs at least {strategy.min_gpus} {'stages (GPUs)' if stages else 'GPUs'}"
    if stages and num_layers is not None and cell.gpus > num_layers:
        need = f"needs at least {cell.gpus} decoder layers"
        return f"{cell.strategy} with {cell.gpus} stages {need}, the model has {num_layers}"
    problem = strategy.mesh.problem(cell.strategy, cell.gpus, cell.mesh, gpus_per_node)
    if problem:
        return problem
    if strategy.tensor_parallel:
        if cell.method == "lora":
            return f"{cell.strategy}: LoRA adapters are not tensor-parallel (peft's layers take no DTensor plan)"
        tp_problem = shape and shape.tensor_parallel_problem(cell.mesh.tensor_parallel)
        if tp_problem:
            return f"{cell.strategy}: {tp_problem}"
    return None


def _products(matrix: dict, model: str, sizes: list[int]):
    """Every cell of one model before pruning, in the axes' order: each strategy's product of the other axes'
    values (a mesh axis only for the strategies whose mesh kind sweeps it), the micro-batches `sizes`."""
    inner = [a for a in AXES if a.field not in ("model", "strategy")]
    for strategy in matrix["strategies"]:
        lists = [sizes if a.field == "batch_size_per_gpu" else a.values(matrix, strategy) for a in inner]
        for combo in itertools.product(*lists):
            values = dict(zip((a.field for a in inner), combo, strict=True))
            gbs = values["batch_size_per_gpu"] * values["gpus"]
            yield Cell(model=model, strategy=strategy, global_batch_size=gbs, **values)


def _check_devices(matrix: dict, hardware: dict) -> None:
    """Refuse a precision the configured device cannot run at all (fp8 on a CPU), before planning a cell."""
    device = hardware.get("device")
    for name in matrix.get("precision", []):
        p = precision_of(name)
        if device in ("cpu", "cuda") and device not in p.devices:
            raise ConfigError(
                f"matrix.precision: {name} needs {p.needs} and hardware.device is {device}; leave {name} out, "
                "or run on such GPUs"
            )


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


def _global_batch(config: dict, index: int, model: dict, cell: Cell) -> int:
    """The global batch of a cell, checked to divide into micro-batches x data-parallel ranks (its mesh's).

    Unset, it is batch_size_per_gpu x GPUs for every strategy (for pipeline: one micro-batch per stage; for
    TP: one per rank of the group), so strategies at the same GPU count train on the same tokens."""
    key = f"models[{index}].global_batch_size" if "global_batch_size" in model else "global_batch_size"
    gbs = model.get("global_batch_size", config.get("global_batch_size"))
    strategy, gpus, bs, dp = cell.strategy, cell.gpus, cell.batch_size_per_gpu, cell.data_parallel_size
    if gbs is None:
        return bs * gpus
    if gbs % (bs * dp):
        raise ConfigError(
            f"{key}: {gbs} for model {model['name']!r} with {strategy} at {gpus} GPU(s) is not a "
            f"multiple of batch_size_per_gpu x data-parallel ranks = {bs} x {dp}; gradient accumulation needs an "
            f"exact division (use a multiple of {bs * dp}, or leave it unset)"
        )
    return gbs


def _batch_sizes(config: dict, index: int, model: dict) -> list[int]:
    """The micro-batches a model's cells sweep: its own `batch_size_per_gpu`, else `matrix.batch_size_per_gpu`,
    else the top-level value."""
    if "batch_size_per_gpu" in model:
        return [model["batch_size_per_gpu"]]
    if config["matrix"].get("batch_size_per_gpu"):
        return config["matrix"]["batch_size_per_gpu"]
    if "batch_size_per_gpu" in config:
        return [config["batch_size_per_gpu"]]
    raise ConfigError(
        f"models[{index}] ({model['name']}): no micro-batch: set batch_size_per_gpu (top level or the model's) "
        "or matrix.batch_size_per_gpu"
    )


def plan(config: dict) -> Plan:
    """Every cell of the matrix, in a stable order: the axes' (ftbench.cell.AXES), model outermost."""
    _check_models(config)
    matrix = config["matrix"]
    gpus_per_node = config.get("hardware", {}).get("gpus_per_node", 8)
    for i, gpus in enumerate(matrix["gpus"]):
        geometry(gpus, gpus_per_node, key=f"matrix.gpus[{i}]")  # refuses a count that does not fill whole nodes
    ranks_device = estimate_device(config.get("hardware", {}))
    _check_devices(matrix, config.get("hardware", {}))
    prune_oom = config.get("limits", {}).get("prune_predicted_oom", False)
    capacity = device_capacity_gb(config) if prune_oom else None
    device = ranks_device if prune_oom else None
    if prune_oom and capacity is None:
        raise ConfigError(
            "limits.prune_predicted_oom: needs the device's memory: hardware.gpu_memory_gb (on CPU "
            "limits.cpu_memory_per_rank_gb)"
        )
    result = Plan()
    for index, model in enumerate(config["models"]):
        sizes = _batch_sizes(config, index, model)
        num_layers = model.get("architecture", {}).get("num_layers")
        needs_shape = prune_oom or any(STRATEGIES[s].tensor_parallel for s in matrix["strategies"])
        shape = model_shape(config, model["name"]) if needs_shape else None
        max_pos = model.get("architecture", {}).get("max_positions")
        if max_pos is not None:
            for j, seq in enumerate(matrix["seq_len"]):
                if seq > max_pos:
                    raise ConfigError(
                        f"matrix.seq_len[{j}]: {seq} exceeds models[{index}].architecture.max_positions={max_pos} "
                        f"({model['name']}); use at most {max_pos} or raise max_positions"
                    )
        for cell in _products(matrix, model["name"], sizes):
            reason = _prune_reason(cell, num_layers, shape, gpus_per_node, ranks_device)
            if not reason:  # a mesh that can be built: its data-parallel ranks divide the global batch
                gbs = _global_batch(config, index, model, cell)
                cell = dataclasses.replace(cell, global_batch_size=gbs)
            if prune_oom and not reason:
                reason = predicted_oom(cell, shape, device, capacity, config["options"])
            if reason:
                result.pruned.append((cell, reason))
            else:
                result.cells.append(cell)
    if not result.cells:
        reasons = sorted({reason for _, reason in result.pruned})
        raise ConfigError(
            f"matrix: every one of the {len(result.pruned)} cells was pruned, nothing to run ({'; '.join(reasons)}); "
            "add strategies to matrix.strategies or GPU counts to matrix.gpus"
        )
    patterns = config.get("select") or ["*"]
    result.selected = [c for c in result.cells if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
    if not result.selected:
        raise ConfigError(
            f"select: {patterns} match none of the {len(result.cells)} cells (ids look like {result.cells[0].id!r})"
        )
    for i, pattern in enumerate(patterns):
        if not any(fnmatch.fnmatchcase(c.id, pattern) for c in result.cells):
            raise ConfigError(
                f"select[{i}]: {pattern!r} matches none of the {len(result.cells)} cells (ids look like "
                f"{result.cells[0].id!r}); fix or drop the pattern"
            )
    return result


def check_downloaded_model(cell: Cell, config_json: str | os.PathLike) -> None:
    """What a downloaded model's config.json alone tells: refuse a cell it cannot run, naming the cell, before
    any process group starts (config: models are checked by `plan`)."""
    cfg = read_json(config_json)
    where = f"model {cell.model!r} ({config_json})"
    limit = max_positions(cfg)
    if limit is not None and cell.seq_len > limit:
        raise ConfigError(
            f"cell {cell.id}: matrix.seq_len {cell.seq_len} exceeds max_position_embeddings={limit} of {where}; "
            "leave that seq_len out or use another model"
        )
    if STRATEGIES[cell.strategy].tensor_parallel:
        problem = Shape.from_config_json(cfg).tensor_parallel_problem(cell.mesh.tensor_parallel)
        if problem:
            raise ConfigError(
                f"cell {cell.id}: {cell.strategy} cannot split {where}: {problem}; leave {cell.strategy} out for it"
            )
    layers = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    if LAYERS in STRATEGIES[cell.strategy].shards and layers is not None and cell.gpus > layers:
        raise ConfigError(
            f"cell {cell.id}: pipeline with {cell.gpus} stages needs at least {cell.gpus} decoder layers, "
            f"{where} has {layers}; leave that GPU count out of matrix.gpus for pipeline or use another model"
        )


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
