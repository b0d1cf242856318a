"""What each strategy is, for planning, the tables and the jobs (its code lives in ftbench.train.strategies)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StrategyTraits:
    """What planning and tables need to know of a strategy (its code lives in ftbench.train.strategies)."""

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
