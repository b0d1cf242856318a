"""What a cell's ranks hold in host memory, from the model's shape alone: the Slurm job's `--mem`.

Analytic and torch-free (planning runs it for every cell). Per rank it asks for a generous runtime plus what
the strategy keeps on the host: on CPU everything the memory estimate counts (ftbench.plan.estimate); on
CUDA only what is offloaded there and the one tensor a rank reads at a time while loading. A dry run before
a hub model is downloaded (and without a `shape`) cannot know its shape.
"""

from __future__ import annotations

from ftbench.cell import Cell
from ftbench.launch.slurm import gpu_gres
from ftbench.plan.estimate import GB, estimate, trainable_params
from ftbench.plan.model_shape import Shape
from ftbench.precision import precision_of
from ftbench.registry import STRATEGIES

RUNTIME_GB = {"cpu": 1.0, "cuda": 4.0}
"""A rank's process without the model: Python, torch, transformers, DeepSpeed, gloo/NCCL; on CUDA the
host side of the CUDA context and libraries. Measured on CPU (benchmarks/memory.py, tiny model): 0.34 GB
(ddp, fsdp, pipeline), 0.36 GB (zero3); the figure leaves room for torch.compile and DeepSpeed's op builds."""
SLACK = 1.25
"""Headroom over the estimate: a Slurm job past its --mem is killed, not reported as OOM."""


def host_offloaded_bytes(shape: Shape, cell: Cell, options: dict) -> float:
    """What an offloading strategy keeps on the host beside a GPU: the fp32 master partition, its gradients
    and AdamW's state (FSDP's offloaded shards: the fp32 weights instead of a master copy)."""
    if not STRATEGIES[cell.strategy].host_offload:
        return 0.0
    t = trainable_params(shape, cell.method, options)
    p = precision_of(cell.precision)
    return t * (2 * p.master_bytes + p.optimizer_bytes) / cell.gpus


def per_rank_gb(shape: Shape, cell: Cell, device: str, options: dict) -> float:
    """Host memory one rank of `cell` needs, with `SLACK`: on CPU the estimate of everything it holds; on a
    GPU what is offloaded to the host and the one tensor (at most the embedding table) loading reads at a time."""
    if device == "cpu":
        predicted = estimate(shape, cell, "cpu", options)
        held = predicted.total - predicted.runtime
    else:
        loading = shape.embedding_params * precision_of(cell.precision).master_bytes  # the largest tensor read
        held = host_offloaded_bytes(shape, cell, options) + loading
    return SLACK * (RUNTIME_GB["cpu" if device == "cpu" else "cuda"] + held / GB)


def cell_request_gb(config: dict, cell: Cell, shape: Shape | None) -> float | None:
    """Host memory per rank a Slurm job of `cell` asks for: `hardware.host_memory_per_rank_gb` when set, else
    the estimate (None: the model's shape is not known yet)."""
    hardware = config["hardware"]
    if hardware.get("host_memory_per_rank_gb"):
        return hardware["host_memory_per_rank_gb"]
    if shape is None:
        return None
    device = "cuda" if gpu_gres(hardware) else "cpu"  # the job asks GPUs, so its ranks run on them
    return per_rank_gb(shape, cell, device, config["options"])
