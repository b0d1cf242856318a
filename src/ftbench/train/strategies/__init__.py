"""Registry of parallelism strategies: a matrix value -> `apply(model, cell, env) -> Trainer`.

A new strategy is one module plus one line here (and its traits in ftbench.registry.STRATEGY_TRAITS);
the loop never tests a strategy name. A cell imports only its own strategy's module: FSDP and pipelining
pull in half a second each of torch.distributed imports that every other cell would pay at start-up.
"""

from __future__ import annotations

import importlib

from ftbench.train.strategies.base import TrainEnv, Trainer

STRATEGIES: dict[str, tuple[str, dict]] = {  # name: (module under ftbench.train.strategies, keyword arguments)
    "ddp": ("ddp", {}),
    "fsdp": ("fsdp", {}),
    "fsdp_offload": ("fsdp", {"offload": True}),
    "zero1": ("zero", {"stage": 1}),
    "zero2": ("zero", {"stage": 2}),
    "zero3": ("zero", {"stage": 3}),
    "zero2_offload": ("zero", {"stage": 2, "offload": True}),
    "zero3_offload": ("zero", {"stage": 3, "offload": True}),
    "pipeline": ("pipeline", {}),
}


def load_strategy(name: str):
    """The module of strategy `name` (imported: its libraries, e.g. DeepSpeed, with it)."""
    try:
        module, _ = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"strategy {name!r} is not one of {sorted(STRATEGIES)}") from None
    return importlib.import_module(f"ftbench.train.strategies.{module}")


def start_runtime(name: str) -> None:
    """Import strategy `name` and start what its library runs besides the process group (DeepSpeed's ops):
    the runtime a cell's memory budget does not count."""
    module = load_strategy(name)
    if hasattr(module, "start_runtime"):
        module.start_runtime(**STRATEGIES[name][1])


def build_trainer(model, cell, env: TrainEnv) -> Trainer:
    return load_strategy(cell.strategy).apply(model, cell, env, **STRATEGIES[cell.strategy][1])


__all__ = ["STRATEGIES", "TrainEnv", "Trainer", "build_trainer", "load_strategy", "start_runtime"]
