"""Registry of parallelism strategies: a matrix value -> `apply(model, cell, env) -> Trainer`.

A new strategy is one module here plus its row in ftbench.registry.STRATEGIES;
the loop never tests a strategy name. A cell imports only its own strategy's module: FSDP and pipelining
pull in half a second each of torch.distributed imports that every other cell would pay at start-up.
"""

from __future__ import annotations

import importlib

from ftbench.registry import STRATEGIES
from ftbench.train.strategies.base import TrainEnv, Trainer


def load_strategy(name: str):
    """The module of strategy `name` (imported: its libraries, e.g. DeepSpeed, with it)."""
    try:
        strategy = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"strategy {name!r} is not one of {sorted(STRATEGIES)}") from None
    return importlib.import_module(f"ftbench.train.strategies.{strategy.module}")


def start_runtime(name: str) -> None:
    """Import strategy `name` and start what its library runs besides the process group (DeepSpeed's ops):
    the runtime a cell's memory budget does not count."""
    module = load_strategy(name)
    if hasattr(module, "start_runtime"):
        module.start_runtime(**STRATEGIES[name].options)


def build_trainer(model, cell, env: TrainEnv) -> Trainer:
    return load_strategy(cell.strategy).apply(model, cell, env, **STRATEGIES[cell.strategy].options)


__all__ = ["TrainEnv", "Trainer", "build_trainer", "load_strategy", "start_runtime"]
