"""Registry of parallelism strategies: a matrix value -> `apply(model, cell, env) -> Trainer`.

A new strategy is one module plus one line here (and its traits in ftbench.config.STRATEGY_TRAITS);
the loop never tests a strategy name.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ftbench.strategies import ddp, fsdp, pipeline, zero
from ftbench.strategies.base import TrainEnv, Trainer

STRATEGIES: dict[str, Callable[..., Trainer]] = {
    "ddp": ddp.apply,
    "fsdp": fsdp.apply,
    "zero1": partial(zero.apply, stage=1),
    "zero2": partial(zero.apply, stage=2),
    "zero3": partial(zero.apply, stage=3),
    "zero2_offload": partial(zero.apply, stage=2, offload=True),
    "zero3_offload": partial(zero.apply, stage=3, offload=True),
    "pipeline": pipeline.apply,
}


def build_trainer(model, cell, env: TrainEnv) -> Trainer:
    try:
        apply = STRATEGIES[cell.strategy]
    except KeyError:
        raise ValueError(f"strategy {cell.strategy!r} is not one of {sorted(STRATEGIES)}") from None
    return apply(model, cell, env)


__all__ = ["STRATEGIES", "TrainEnv", "Trainer", "build_trainer"]
