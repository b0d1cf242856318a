"""Registry of parallelism strategies: a matrix value -> `apply(model, cell, env) -> Trainer`.

A new strategy is one module plus one line here; the loop never tests a strategy name.
"""

from __future__ import annotations

from collections.abc import Callable

from ftbench.strategies import ddp
from ftbench.strategies.base import TrainEnv, Trainer

STRATEGIES: dict[str, Callable[..., Trainer]] = {
    "ddp": ddp.apply,
}

ZERO_STAGE: dict[str, int | None] = {"ddp": None}
"""DeepSpeed ZeRO stage of each strategy for the tables (None: not ZeRO)."""


def build_trainer(model, cell, env: TrainEnv) -> Trainer:
    try:
        apply = STRATEGIES[cell.strategy]
    except KeyError:
        raise ValueError(f"strategy {cell.strategy!r} is not one of {sorted(STRATEGIES)}") from None
    return apply(model, cell, env)


__all__ = ["STRATEGIES", "ZERO_STAGE", "TrainEnv", "Trainer", "build_trainer"]
