"""A cell's peak memory per rank on its device, predicted from the model's shape before anything runs.

Analytic and torch-free: planning, the preview and the summary run it for every cell. It counts what the
cell's strategy keeps on the rank's device (GPU memory on CUDA, host memory on CPU) — parameters (the
rank's shard, or a replica, plus the layers it gathers), gradients, optimizer state (AdamW's two moments,
DeepSpeed's fp32 master copy), activations of the micro-batches in flight — and the runtime. It predicts the
figure the cell measures as `train_peak_memory_gb` (the largest rank's): VmHWM of the training steps on
CPU, the allocator's reserved bytes on CUDA. Where it errs and by how much: docs/memory.md "The estimate".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from ftbench.cell import Cell
from ftbench.plan.builds import RESOURCES
from ftbench.plan.model_shape import Shape, model_shape
from ftbench.precision import precision_of
from ftbench.registry import GRADIENTS, LAYERS, OPTIMIZER, PARAMETERS, STRATEGIES

GB = 2**30
FP32 = 4
"""Bytes per element of what stays fp32 whatever the precision: the norms' upcast inputs, the residual stream
under checkpointing, the logits the loss upcasts. The precision's own widths are ftbench.precision's."""

RUNTIME_BYTES = {"cpu": 0.34 * GB, "cuda": 0.0}
"""What a rank's measured peak counts besides the model. CPU: the resident process with a tiny model
(Python, torch, transformers, gloo; benchmarks/memory.py: 0.338-0.340 GB for ddp, fsdp and pipeline, 0.364
for zero3, the extra in `ZERO_RUNTIME_BYTES`). CUDA: the allocator's reserved bytes hold tensors only (the
CUDA context and NCCL's buffers are outside them)."""
ZERO_RUNTIME_BYTES = {"cpu": 0.025 * GB, "cuda": 0.0}
ZERO12_CPU_EXTRA = 16
"""Bytes per trained parameter, over the world, that ZeRO-1/2 on DeepSpeed's CPU accelerator holds beyond the
20 its buffers account for (a 16-bit-or-fp32 gradient partition, the fp32 master partition and AdamW):
measured, not explained (benchmarks/memory.py, ~120M Llama: 35-36 bytes per parameter per world at 2 and 4
ranks, AMD EPYC). Its GPU path is taken as DeepSpeed's own estimate counts it."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one rank (the largest) of a cell holds on its device at its training peak, by kind."""

    runtime: float
    parameters: float
    """Its share of the weights, plus gathered layers (FSDP, ZeRO-3) and bf16 copies autocast keeps."""
    gradients: float
    optimizer: float
    """AdamW's moments and DeepSpeed's fp32 master weights, the rank's partition of them."""
    activations: float

    @property
    def total(self) -> float:
        return sum(getattr(self, f.name) for f in fields(self))

    @property
    def gb(self) -> float:
        return self.total / GB

    def breakdown(self) -> str:
        """`params 0.11 + grads 0.11 + optim 0.22 + activ 0.04 + runtime 0.34 GB`, for notes and previews."""
        parts = [
            ("params", self.parameters),
            ("grads", self.gradients),
            ("optim", self.optimizer),
            ("activ", self.activations),
            ("runtime", self.runtime),
        ]
        return " + ".join(f"{name} {value / GB:.2f}" for name, value in parts) + " GB"


def trainable_params(shape: Shape, method: str, options: dict) -> int:
    if method == "lora":
        return shape.lora_params(options.get("lora", {}).get("r", 8))
    return shape.params


def layer_activation_bytes(shape: Shape, tokens: int, precision: str, tp: int = 1) -> int:
    """What autograd keeps of one decoder layer's forward over `tokens` tokens. Per token: the two RMSNorms'
    input and normalized output (4 x hidden, fp32: they upcast), attention's rotated q and k, v and output
    (4 x hidden; CPU and GPU SDPA kernels keep these), the copy o_proj reads (hidden), and the MLP's gate,
    up, SiLU(gate) and product (4 x intermediate); those last are bf16 under autocast or a bf16 module.
    Tensor parallelism splits attention and the MLP over the `tp` ranks of a group; the norms see the whole
    residual stream."""
    element = precision_of(precision).compute_bytes
    return tokens * (4 * shape.hidden * FP32 + (5 * shape.hidden + 4 * shape.intermediate) * element // tp)


def activation_bytes(
    shape: Shape, cell: Cell, layers: int | None = None, micro_batches: int = 1, head: bool = True
) -> int:
    """What autograd keeps for `micro_batches` micro-batches through `layers` decoder layers (default: all),
    plus (`head`) the logits, their log-softmax and their gradient (fp32: the loss upcasts). With activation
    checkpointing each layer keeps only its input, and one layer at a time holds its intermediates again
    while it is recomputed."""
    layers = shape.layers if layers is None else layers
    tokens = cell.batch_size_per_gpu * cell.seq_len
    per_layer = layer_activation_bytes(shape, tokens, cell.precision, cell.mesh.tensor_parallel)
    logits = 3 * tokens * shape.vocab * FP32 if head else 0
    if cell.activation_checkpointing == "full":
        kept = micro_batches * layers * tokens * shape.hidden * FP32  # the residual stream stays fp32
        return kept + per_layer + micro_batches * logits
    return micro_batches * (layers * per_layer + logits)


def _pipeline_stage(shape: Shape, cell: Cell, options: dict, t: int, runtime: float) -> MemoryEstimate:
    """The largest stage: its layers' weights (with autocast's copies), gradients and AdamW state, and the
    activations of the micro-batches it holds at once (GPipe: all; 1F1B: at most the stages from it to the
    last); the logits on the last stage only."""
    world, schedule = cell.gpus, options.get("pipeline", {}).get("schedule", "1F1B")
    p = precision_of(cell.precision)
    stages = []
    for stage in range(world):
        held = shape.stage_params(stage, world)
        in_flight = cell.grad_accum_steps if schedule == "GPipe" else min(cell.grad_accum_steps, world - stage)
        layers = shape.stage_layers(stage, world)
        copies = p.compute_bytes if p.mixed else 0  # autocast's 16-bit copies
        stages.append(
            MemoryEstimate(
                runtime,
                parameters=held * (p.master_bytes + copies),
                gradients=held / shape.params * t * p.master_bytes,
                optimizer=held / shape.params * t * p.optimizer_bytes,
                activations=activation_bytes(shape, cell, layers, in_flight, head=stage == world - 1),
            )
        )
    return max(stages, key=lambda e: e.total)


def estimate(shape: Shape, cell: Cell, device: str, options: dict) -> MemoryEstimate:
    """The peak per rank of `cell` on `device` (`cpu` or `cuda`), with its strategy, method, precision,
    offload, activation checkpointing, micro-batch and sequence length."""
    strategy = STRATEGIES[cell.strategy]
    mesh = cell.mesh
    # a TP rank holds its block of each split layer (planning refuses LoRA with TP, so all of it trains);
    # sharded states are split over the mesh's shard dimension (the world, HSDP's group, fsdp_tp's dp ranks)
    tp, world = mesh.tensor_parallel, mesh.shard
    n = shape.tp_params(tp) if tp > 1 else shape.params
    t = n if tp > 1 else trainable_params(shape, cell.method, options)
    layer = (shape.layer_params - shape.norm_params) // tp + shape.norm_params
    p = precision_of(cell.precision)  # bf16, fp16 and fp8 (bf16 outside its float8 matmuls) keep 16-bit copies
    runtime = RUNTIME_BYTES[device] + (ZERO_RUNTIME_BYTES[device] if strategy.zero_stage else 0)
    if LAYERS in strategy.shards:
        return _pipeline_stage(shape, cell, options, t, runtime)

    activations = activation_bytes(shape, cell)
    # DeepSpeed's bf16 mode holds bf16 module weights and gradients beside an fp32 master partition; every
    # other strategy keeps fp32 weights (autocast or FSDP's MixedPrecisionPolicy casts for compute)
    weight = p.compute_bytes if strategy.zero_stage else p.master_bytes
    # DeepSpeed also keeps an fp32 master partition and the fp32 gradient partition its optimizer steps on
    master = p.master_bytes * t if strategy.zero_stage else 0
    offload = strategy.host_offload and device == "cuda"  # on a CPU device "offloaded" is where it was
    if PARAMETERS in strategy.shards:
        compute = p.compute_bytes
        # two layers live at once (the one computing and the one prefetched) plus the root's embedding and head
        gathered = (2 * layer + 2 * shape.embedding_params) * compute
        bucket = layer * compute  # a layer's unsharded gradients before their reduce-scatter
        if offload and not strategy.zero_stage:  # FSDP's CPUOffloadPolicy: shards, gradients, step on the host
            return MemoryEstimate(runtime, gathered, bucket, 0.0, activations)
        if offload:  # ZeRO-3 offloads the optimizer: fp32 master, gradient partitions and AdamW on the host
            return MemoryEstimate(runtime, n * weight / world + gathered, bucket, 0.0, activations)
        return MemoryEstimate(
            runtime,
            parameters=n * weight / world + gathered,
            gradients=(t * weight + master) / world + bucket,
            optimizer=(master + t * p.optimizer_bytes) / world,
            activations=activations,
        )
    # autocast's 16-bit copies, kept for backward
    casts = n * p.compute_bytes if p.mixed and not strategy.zero_stage else 0
    # a replica; ZeRO-2 partitions the gradients as each layer's reduce bucket fills, ZeRO-1 only the optimizer
    # state; ZeRO-Offload steps the fp32 master partition and AdamW on the host
    sharded_grads = GRADIENTS in strategy.shards
    gradients = t * weight / world + layer * weight if sharded_grads else t * weight
    gradients += 0.0 if offload else master / world
    adamw = t * p.optimizer_bytes
    optimizer = (master + adamw) / world if OPTIMIZER in strategy.shards else adamw
    if strategy.zero_stage and device == "cpu":
        optimizer += ZERO12_CPU_EXTRA * t / world
    optimizer = 0.0 if offload else optimizer
    return MemoryEstimate(runtime, n * weight + casts, gradients, optimizer, activations)


def estimate_device(hardware: dict) -> str:
    """The device a cell's ranks run on, as planning can know it: `hardware.device`; for `auto`, cuda when
    jobs ask Slurm for GPUs by an explicit `gpu_gres` or this machine has an NVIDIA driver, else cpu."""
    if hardware.get("device") in ("cpu", "cuda"):
        return hardware["device"]
    return "cuda" if hardware.get("gpu_gres") or os.path.exists("/dev/nvidiactl") else "cpu"


def device_capacity_gb(config: dict) -> float | None:
    """What one rank may hold on its device, for pruning cells predicted not to fit: `hardware.gpu_memory_gb`
    on a GPU; on CPU the runtime plus `limits.cpu_memory_per_rank_gb` (None: no limit known)."""
    if estimate_device(config["hardware"]) == "cpu":
        budget = config["limits"].get("cpu_memory_per_rank_gb") or 0
        return budget + RUNTIME_BYTES["cpu"] / GB if budget else None
    return config["hardware"].get("gpu_memory_gb")


def predicted_oom(cell: Cell, shape: Shape | None, device: str, capacity_gb: float, options: dict) -> str | None:
    """Why `cell` is predicted not to fit `capacity_gb` of its device, or None: it fits, or its model's shape
    is not known."""
    if shape is None:
        return None
    predicted = estimate(shape, cell, device, options)
    if predicted.gb <= capacity_gb:
        return None
    return (
        f"predicted {predicted.gb:.1f} GB per rank > {capacity_gb:g} GB of the device ({predicted.breakdown()}); "
        "limits.prune_predicted_oom is on"
    )


def cell_estimates(
    config: dict, cells: list[Cell], device: str | None = None, resources: str = RESOURCES
) -> dict[str, MemoryEstimate | None]:
    """Each cell's estimate on `device` (default: the one its ranks run on); None where its model's shape is
    not known yet."""
    device = device or estimate_device(config["hardware"])
    shapes = {name: model_shape(config, name, resources) for name in {cell.model for cell in cells}}
    return {
        cell.id: None if shapes[cell.model] is None else estimate(shapes[cell.model], cell, device, config["options"])
        for cell in cells
    }


def config_read(config: dict, capacity: bool = False) -> dict:
    """What `summary_inputs` (each cell's estimate on both devices, the device it is estimated for, the prices)
    and, with `capacity`, `device_capacity_gb` read of a config: a rule's params, so that a change elsewhere in
    the config (a limit, a partition) re-runs no rule that takes them. The models go whole: their shapes come
    from their sources, tokenizers, architectures and `shape` files, read where their builds lie (which the
    dataset and the seed decide too)."""
    hardware = {k: config["hardware"].get(k) for k in ("device", "gpu_gres", *(["gpu_memory_gb"] if capacity else []))}
    read = {
        "models": config["models"],
        "dataset": config["dataset"],
        "seed": config["seed"],
        "hardware": hardware,
        "options": config["options"],
        "cost": {"price_per_gpu_hour": config["cost"]["price_per_gpu_hour"]},
    }
    if capacity:
        read["limits"] = {"cpu_memory_per_rank_gb": config["limits"].get("cpu_memory_per_rank_gb")}
    return read


def summary_inputs(config: dict, cells: list[Cell]) -> dict:
    """aggregate.collect's estimate and cost arguments: {device: {cell id: GB}} on both devices (the summary
    takes the one each cell ran on), the device a cell without a record is estimated for, and the prices."""
    return {
        "estimates": {
            device: {cell_id: e and e.gb for cell_id, e in cell_estimates(config, cells, device).items()}
            for device in ("cpu", "cuda")
        },
        "estimate_device": estimate_device(config["hardware"]),
        "prices": config["cost"]["price_per_gpu_hour"],
    }
