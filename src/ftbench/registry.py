"""What each parallelism strategy is: one row per strategy, read by planning (pruning, the global batch, the
Slurm memory request), the job (which module wraps the model, with which options) and the tables (the ZeRO
stage). The schema's `matrix.strategies` enum is held to it by a test. Plain data: planning imports it."""

from __future__ import annotations

from dataclasses import dataclass, field

PARAMETERS, GRADIENTS, OPTIMIZER, LAYERS = "parameters", "gradients", "optimizer", "layers"


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


def default_inner_degree(gpus: int) -> int:
    """The inner mesh dimension when the config leaves it unset (`matrix.tp_degree` for fsdp_tp,
    `matrix.shard_group` for hsdp): half the GPUs, at most 8, so that on one node the mesh is two groups
    (unlike fsdp or tp) and on 8-GPU nodes each group is one node."""
    return max(1, min(gpus // 2, 8))


@dataclass(frozen=True)
class MeshKind:
    """How a strategy arranges its ranks: one group of every rank, or a layer split over every rank (`tp`).
    Kinds with an inner dimension (`InnerMesh`) take its degree from a matrix axis."""

    name: str
    tensor_parallel: bool = False
    """Layers are split over the inner (or every) rank: its groups stay inside a node."""
    sweeps: str | None = None
    """The Cell field (and `matrix` key) its inner degree comes from; None: it has none."""

    def of(self, gpus: int, degree: int, sharded: bool = False, data_parallel: bool = True) -> Mesh:
        """The mesh at `gpus` ranks; `sharded`: the strategy shards states over them; `data_parallel`: False
        when ranks split layers (a pipeline reads one shard)."""
        if self.tensor_parallel:
            return Mesh(1, tensor_parallel=gpus)
        if not data_parallel:
            return Mesh(1)
        return Mesh(gpus, shard=gpus if sharded else 1)

    def problem(self, strategy: str, gpus: int, mesh: Mesh, gpus_per_node: int) -> str | None:
        """Why `mesh` cannot be built (None: it can): a TP group wider than a node or across two (its
        all-reduces run every layer: it stays on one node's links)."""
        if not self.tensor_parallel:
            return None
        inner = mesh.tensor_parallel
        if inner > min(gpus, gpus_per_node):
            return f"{strategy}: a TP group of {inner} GPUs is wider than a node of {gpus_per_node}"
        if gpus > gpus_per_node and gpus_per_node % inner:
            return f"{strategy}: TP groups of {inner} GPUs do not divide a node of {gpus_per_node} (one would span two)"
        return None


@dataclass(frozen=True)
class InnerMesh(MeshKind):
    """Two dimensions: an inner group of `degree` ranks (0: `default_inner_degree`), the rest across groups:
    TP groups with FSDP across them (fsdp_tp), or HSDP's shard groups replicated across."""

    def of(self, gpus: int, degree: int, sharded: bool = True, data_parallel: bool = True) -> Mesh:
        inner = degree or default_inner_degree(gpus)
        if self.tensor_parallel:
            dp = max(1, gpus // inner)  # a degree above the world is pruned (`problem`); its estimate stays finite
            return Mesh(dp, tensor_parallel=inner, shard=dp)
        return Mesh(gpus, shard=inner)

    def problem(self, strategy: str, gpus: int, mesh: Mesh, gpus_per_node: int) -> str | None:
        """An inner degree that does not divide the world, or a TP group that does not fit a node."""
        inner, name = (mesh.tensor_parallel, "TP degree") if self.tensor_parallel else (mesh.shard, "shard group")
        if gpus % inner:
            return f"{strategy}: the world of {gpus} GPUs is not divisible by the {name} {inner}"
        return super().problem(strategy, gpus, mesh, gpus_per_node)


FLAT = MeshKind("flat")
TP = MeshKind("tp", tensor_parallel=True)
FSDP_TP = InnerMesh("fsdp_tp", tensor_parallel=True, sweeps="tp_degree")
HSDP = InnerMesh("hsdp", sweeps="shard_group")
MESH_KINDS = {kind.name: kind for kind in (FLAT, TP, FSDP_TP, HSDP)}


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
    mesh: MeshKind = FLAT
    """How the ranks are arranged (`MESH_KINDS`); which precisions it runs is ftbench.precision's."""

    @property
    def tensor_parallel(self) -> bool:
        return self.mesh.tensor_parallel

    @property
    def data_parallel(self) -> bool:
        """False when ranks split the model's layers rather than the batch (pipeline). A TP group's ranks also
        read one shard; `mesh_at` gives every strategy's data-parallel degree."""
        return LAYERS not in self.shards

    @property
    def gathers_parameters(self) -> bool:
        """Each rank all-gathers and frees whole layers every step (FSDP, ZeRO-3): its malloc settings differ."""
        return PARAMETERS in self.shards

    def mesh_at(self, gpus: int, degree: int = 0) -> Mesh:
        """Its mesh at `gpus` ranks with inner degree `degree` (0: the default)."""
        return self.mesh.of(gpus, degree, sharded=bool(self.shards), data_parallel=self.data_parallel)


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
            "zero3_offload",
            "zero",
            {"stage": 3, "offload": True},
            shards=_SHARDED,
            zero_stage=3,
            host_offload=True,
        ),
        Strategy("pipeline", "pipeline", shards=(LAYERS,), min_gpus=2),
        Strategy("tp", "tensor_parallel", min_gpus=2, mesh=TP),
        Strategy(
            "fsdp_tp",
            "tensor_parallel",
            {"fsdp": True},
            shards=_SHARDED,
            min_gpus=4,
            mesh=FSDP_TP,
        ),
        Strategy("hsdp", "fsdp", shards=_SHARDED, min_gpus=4, mesh=HSDP),
    )
}
