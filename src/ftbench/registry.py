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
    precisions: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp8")
    """The precisions its code runs: fp16 with the loss scaling its users run (GradScaler, FSDP's
    ShardedGradScaler, DeepSpeed's fp16 mode); fp8 through torchao's float8 linears."""
    mesh: str = "flat"
    """How the ranks are arranged (`mesh_of`): `flat` (one group of every rank), `tp` (every rank one
    tensor-parallel group), `fsdp_tp` (FSDP over data-parallel groups x TP inside each), `hsdp` (shard groups,
    replicated across)."""

    @property
    def tensor_parallel(self) -> bool:
        return self.mesh in ("tp", "fsdp_tp")

    @property
    def data_parallel(self) -> bool:
        """False when ranks split the model's layers rather than the batch (pipeline). A TP group's ranks also
        read one shard; `mesh_of` gives every strategy's data-parallel degree."""
        return LAYERS not in self.shards

    @property
    def gathers_parameters(self) -> bool:
        """Each rank all-gathers and frees whole layers every step (FSDP, ZeRO-3): its malloc settings differ."""
        return PARAMETERS in self.shards


_SHARDED = (PARAMETERS, GRADIENTS, OPTIMIZER)
_NO_FP8 = ("fp32", "bf16", "fp16")
"""DeepSpeed's engine and offloaded optimizers take no float8 linears."""
_TP_PRECISIONS = ("fp32", "bf16")
"""TP keeps the embedding, norms and head plain beside DTensor layers: torch's grad scalers take no such mix
(fp16), and float8 would need torchao's own TP plans (fp8)."""
STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("ddp", "ddp"),
        Strategy("fsdp", "fsdp", shards=_SHARDED),
        Strategy("fsdp_offload", "fsdp", {"offload": True}, shards=_SHARDED, host_offload=True, precisions=_NO_FP8),
        Strategy("zero1", "zero", {"stage": 1}, shards=(OPTIMIZER,), zero_stage=1, precisions=_NO_FP8),
        Strategy("zero2", "zero", {"stage": 2}, shards=(GRADIENTS, OPTIMIZER), zero_stage=2, precisions=_NO_FP8),
        Strategy("zero3", "zero", {"stage": 3}, shards=_SHARDED, zero_stage=3, precisions=_NO_FP8),
        Strategy(
            "zero2_offload",
            "zero",
            {"stage": 2, "offload": True},
            shards=(GRADIENTS, OPTIMIZER),
            zero_stage=2,
            host_offload=True,
            precisions=_NO_FP8,
        ),
        Strategy(
            "zero3_offload",
            "zero",
            {"stage": 3, "offload": True},
            shards=_SHARDED,
            zero_stage=3,
            host_offload=True,
            precisions=_NO_FP8,
        ),
        Strategy("pipeline", "pipeline", shards=(LAYERS,), min_gpus=2, precisions=("fp32", "bf16")),
        Strategy("tp", "tensor_parallel", min_gpus=2, mesh="tp", precisions=_TP_PRECISIONS),
        Strategy(
            "fsdp_tp",
            "tensor_parallel",
            {"fsdp": True},
            shards=_SHARDED,
            min_gpus=4,
            mesh="fsdp_tp",
            precisions=_TP_PRECISIONS,
        ),
        Strategy("hsdp", "fsdp", shards=_SHARDED, min_gpus=4, mesh="hsdp"),
    )
}


def default_inner_degree(gpus: int) -> int:
    """The inner mesh dimension when the config leaves it unset (`matrix.tp_degree` for fsdp_tp,
    `matrix.shard_group` for hsdp): half the GPUs, at most 8, so that on one node the mesh is two groups
    (unlike fsdp or tp) and on 8-GPU nodes each group is one node."""
    return max(1, min(gpus // 2, 8))


@dataclass(frozen=True)
class Mesh:
    """A cell's ranks as parallel dimensions."""

    data_parallel: int
    """Ranks that read different samples (what the global batch divides by)."""
    tensor_parallel: int = 1
    """Ranks one tensor-parallel layer is split over (consecutive ranks: inside a node)."""
    shard: int = 1
    """Ranks the sharded states (`Strategy.shards`) are split over: the world, HSDP's shard group, or the
    data-parallel ranks of fsdp_tp; 1 for a replica."""

    @property
    def replicate(self) -> int:
        """HSDP: groups that hold the same shards."""
        return self.data_parallel // self.shard


def mesh_of(strategy: str, gpus: int, tp_degree: int = 0, shard_group: int = 0) -> Mesh:
    """The mesh of `strategy` at `gpus` ranks; `tp_degree` / `shard_group` 0: `default_inner_degree`. A
    world the inner degree does not divide is the planner's to prune (`mesh_problem`)."""
    row = STRATEGIES[strategy]
    if row.mesh == "tp":
        return Mesh(1, tensor_parallel=gpus)
    if row.mesh == "fsdp_tp":
        tp = tp_degree or default_inner_degree(gpus)
        dp = max(1, gpus // tp)  # a degree above the world is pruned (mesh_problem); its estimate stays finite
        return Mesh(dp, tensor_parallel=tp, shard=dp)
    if row.mesh == "hsdp":
        return Mesh(gpus, shard=shard_group or default_inner_degree(gpus))
    if not row.data_parallel:
        return Mesh(1)
    return Mesh(gpus, shard=gpus if row.shards else 1)


def mesh_problem(strategy: str, gpus: int, mesh: Mesh, gpus_per_node: int) -> str | None:
    """Why `mesh` (`mesh_of`'s, for `strategy` at `gpus`) cannot be built (None: it can): an inner degree
    that does not divide the world, or a TP group wider than a node or across two (its all-reduces run every
    layer: it stays on one node's links)."""
    row = STRATEGIES[strategy]
    if row.mesh == "flat":
        return None
    inner, name = (mesh.tensor_parallel, "TP degree") if row.tensor_parallel else (mesh.shard, "shard group")
    if gpus % inner:
        return f"{strategy}: the world of {gpus} GPUs is not divisible by the {name} {inner}"
    if row.tensor_parallel and inner > min(gpus, gpus_per_node):
        return f"{strategy}: a TP group of {inner} GPUs is wider than a node of {gpus_per_node}"
    if row.tensor_parallel and gpus > gpus_per_node and gpus_per_node % inner:
        return f"{strategy}: TP groups of {inner} GPUs do not divide a node of {gpus_per_node} (one would span two)"
    return None
