"""What each parallelism strategy is: one row per strategy, read by planning (pruning, the global batch, the
Slurm memory request), the job (which module wraps the model, with which options) and the tables (the ZeRO
stage). The schema's `matrix.strategies` enum is held to it by a test. Plain data: planning imports it."""

from __future__ import annotations

from dataclasses import dataclass, field

PARAMETERS, GRADIENTS, OPTIMIZER, LAYERS = "parameters", "gradients", "optimizer", "layers"


@dataclass(frozen=True)
class Strategy:
    name: str
    module: str
    """Its code: the module under ftbench.train.strategies whose `apply` wraps the model."""
    options: dict = field(default_factory=dict)
    """Keyword arguments of that module's `apply` (and `start_runtime`)."""
    shards: tuple[str, ...] = ()
    """What each rank holds 1/world of: parameters, gradients, optimizer state; or its own layers (a pipeline
    stage). Nothing: a replica per rank."""
    zero_stage: int | None = None
    """DeepSpeed ZeRO stage shown in the tables; None when not ZeRO (DeepSpeed also keeps an fp32 master copy
    of the trained weights beside the module's)."""
    host_offload: bool = False
    """Optimizer state and master weights live in host memory beside a GPU."""
    min_gpus: int = 1

    @property
    def data_parallel(self) -> bool:
        """False when ranks split the model rather than the batch (pipeline): one data shard per job."""
        return LAYERS not in self.shards

    @property
    def gathers_parameters(self) -> bool:
        """Each rank all-gathers and frees whole layers every step (FSDP, ZeRO-3): its malloc settings differ."""
        return PARAMETERS in self.shards


_SHARDED = (PARAMETERS, GRADIENTS, OPTIMIZER)
STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("ddp", "ddp"),
        Strategy("fsdp", "fsdp", shards=_SHARDED),
        Strategy("fsdp_offload", "fsdp", {"offload": True}, shards=_SHARDED, host_offload=True),
        Strategy("zero1", "zero", {"stage": 1}, shards=(OPTIMIZER,), zero_stage=1),
        Strategy("zero2", "zero", {"stage": 2}, shards=(GRADIENTS, OPTIMIZER), zero_stage=2),
        Strategy("zero3", "zero", {"stage": 3}, shards=_SHARDED, zero_stage=3),
        Strategy(
            "zero2_offload",
            "zero",
            {"stage": 2, "offload": True},
            shards=(GRADIENTS, OPTIMIZER),
            zero_stage=2,
            host_offload=True,
        ),
        Strategy(
            "zero3_offload", "zero", {"stage": 3, "offload": True}, shards=_SHARDED, zero_stage=3, host_offload=True
        ),
        Strategy("pipeline", "pipeline", shards=(LAYERS,), min_gpus=2),
    )
}
