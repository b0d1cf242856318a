"""What every strategy gives the loop, and what the loop gives every strategy."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from typing import Protocol

import torch

from ftbench.precision import precision_of
from ftbench.train.weights import Weights


@dataclass(frozen=True)
class TrainEnv:
    """The process's place in the job and the optimizer settings."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    lr: float
    weight_decay: float
    max_grad_norm: float
    options: dict = field(default_factory=dict)
    """Job spec `options` of this cell's strategy and method (e.g. the pipeline schedule)."""
    weights: Weights | None = None
    """Where the model's weights are: a strategy builds or receives the model empty and fills what it holds."""


class Trainer(Protocol):
    module: torch.nn.Module
    """The model as built (unwrapped), for generation and parameter counts."""
    data_rank: int
    """Which data-parallel shard this process reads."""
    data_world: int
    """How many different shards the job reads per step."""

    def train_step(self, micro_batches: list[torch.Tensor]) -> torch.Tensor:
        """Forward/backward every micro-batch, then one optimizer step; the mean loss (detached)."""

    def eval_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Mean next-token loss of `batch` without gradients (detached)."""

    def generate(self, prompts: torch.Tensor, new_tokens: int) -> torch.Tensor:
        """Greedy continuation of `prompts` by exactly `new_tokens` tokens."""


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype a precision computes in (ftbench.precision; fp8: float8 matmuls inside, the rest bf16)."""
    return getattr(torch, precision_of(precision).compute_dtype)


def autocast(precision: str, device: torch.device):
    """bf16 / fp16 / fp8: autocast around forward with fp32 master weights; fp32: nothing."""
    if precision_of(precision).mixed:
        return torch.autocast(device_type=device.type, dtype=compute_dtype(precision))
    return contextlib.nullcontext()


def mixed_precision_policy(precision: str):
    """FSDP2's policy: compute in the precision's dtype, reduce gradients in fp32, keep fp32 shards."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if precision_of(precision).mixed:
        return MixedPrecisionPolicy(param_dtype=compute_dtype(precision), reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def grad_scaler(precision: str, device: torch.device, sharded: bool = False):
    """fp16's dynamic loss scaling, as each strategy's users run it: torch's GradScaler, FSDP's
    ShardedGradScaler for sharded gradients (it finds overflow on every rank's shard); None otherwise."""
    if not precision_of(precision).loss_scaling:
        return None
    if sharded:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(device.type)
    return torch.amp.GradScaler(device.type)


def _mesh_key(param: torch.Tensor):
    mesh = getattr(param, "device_mesh", None)
    return None if mesh is None else (tuple(mesh.mesh.flatten().tolist()), mesh.mesh_dim_names)


def adamw(params, env: TrainEnv, scaled: bool = False) -> torch.optim.Optimizer:
    """The optimizer every strategy uses (DeepSpeed's engine wraps the same one), so strategies differ only
    in parallelism. Fused: one kernel over all tensors instead of a Python loop per parameter (on CPU the
    default is that loop). One parameter group per device mesh (plain tensors apart): the fused kernel runs
    per group and takes no mix of DTensors on different meshes (TP's layers and its replicated rest).
    `scaled` (fp16's GradScaler steps it): on CPU the unfused loop, because the fused CPU kernel refuses the
    scaler's one-element overflow flag (torch 2.13: "output with shape [] doesn't match ... [1]")."""
    groups: dict = {}
    for p in params:
        if p.requires_grad:
            groups.setdefault(_mesh_key(p), []).append(p)
    return torch.optim.AdamW(
        [{"params": group} for group in groups.values()],
        lr=env.lr,
        weight_decay=env.weight_decay,
        betas=(0.9, 0.95),
        fused=not (scaled and env.device.type == "cpu"),
    )


def compile_requested(cell, env: TrainEnv) -> bool:
    """`options.<strategy>.compile` of the cell's strategy. On CPU, Inductor builds C++ kernels: without a
    compiler the first step would fail deep inside torch, so it is refused here, naming the option."""
    wanted = bool(env.options.get(cell.strategy, {}).get("compile", False))
    compiler = os.environ.get("CXX", "g++")
    if wanted and env.device.type == "cpu" and not shutil.which(compiler):
        raise ValueError(
            f"options.{cell.strategy}.compile: torch.compile on CPU needs a C++ compiler, and {compiler!r} is not "
            "on PATH (install g++ or set CXX), or drop the option"
        )
    return wanted


def eager():
    """Run compiled modules eagerly: evaluation and generation see other shapes (a growing KV cache) than
    training, and compiling each of them would cost more than it saves."""
    return torch.compiler.set_stance("force_eager")


def greedy_generate(module: torch.nn.Module, prompts: torch.Tensor, new_tokens: int) -> torch.Tensor:
    eos = module.config.eos_token_id
    return module.generate(
        input_ids=prompts,
        attention_mask=torch.ones_like(prompts),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=eos,
    )


def _replicas(grad: torch.Tensor, world: int) -> int:
    """How many ranks hold the same values as this rank's part of `grad`: every rank for a plain tensor; for
    a DTensor, the other coordinates of a submesh times its replicated dimensions."""
    from torch.distributed.tensor import DTensor

    if not isinstance(grad, DTensor):
        return world
    if any(placement.is_partial() for placement in grad.placements):
        raise ValueError("clip_grad_norm: a partial (unreduced) gradient")
    mesh = grad.device_mesh
    copies = world // mesh.size()
    for dim, placement in enumerate(grad.placements):
        if placement.is_replicate():
            copies *= mesh.size(dim)
    return copies


def clip_grad_norm(params, max_norm: float) -> torch.Tensor:
    """Scale gradients to a global norm of at most `max_norm` over the whole model, for parameters that mix
    plain tensors (replicated on every rank) and DTensors on different meshes, which
    `torch.nn.utils.clip_grad_norm_` cannot combine. Each rank's local squared norms count once over the
    ranks that hold the same values (its replicas), then one all-reduce over the world sums them."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    world = dist.get_world_size()
    device = "cpu"
    by_copies: dict[int, list[torch.Tensor]] = {}  # local gradients by how many ranks hold the same values
    for p in params:
        device = p.device
        if p.grad is not None:
            by_copies.setdefault(_replicas(p.grad, world), []).append(
                p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad
            )
    total = torch.zeros((), device=device)  # every rank joins the all-reduce, whatever it holds
    for copies, grads in by_copies.items():  # one fused norm kernel per group, not one per tensor
        total += torch.stack(torch._foreach_norm(grads)).float().pow(2).sum() / copies
    dist.all_reduce(total)
    norm = total.sqrt()
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for grads in by_copies.values():
        torch._foreach_mul_(grads, scale)
    return norm


def mesh_facts(mesh) -> dict:
    """What a cell's metrics.json records of its device mesh: each dimension's size, its groups of ranks, and
    every rank's node (Slurm's name for it, else the hostname), so a TP group can be checked to sit on one."""
    import os
    import socket

    from ftbench.train.metrics import gather

    ranks = mesh.mesh
    names = mesh.mesh_dim_names
    return {
        "dims": dict(zip(names, ranks.shape, strict=True)),
        "groups": {name: ranks.movedim(i, -1).reshape(-1, ranks.shape[i]).tolist() for i, name in enumerate(names)},
        "hosts": gather(os.environ.get("SLURMD_NODENAME") or socket.gethostname()),
    }


class DataParallelTrainer:
    """What DDP and FSDP share: every rank runs the whole model on its own shard of the batch. A subclass
    sets `module`, `optimizer`, `max_grad_norm` (and `autocast_precision`, `device` where forward runs under
    autocast) and gives `_forward_backward(batch, is_last, n)`: one micro-batch, its loss scaled by 1/n,
    gradients synchronised only when `is_last`; the detached loss."""

    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    max_grad_norm: float
    autocast_precision: str = "fp32"
    """"bf16"/"fp16": autocast around forward (DDP); FSDP casts through its MixedPrecisionPolicy."""
    device: torch.device | None = None
    scaler: torch.amp.GradScaler | None = None
    """fp16: the loss scaler (`grad_scaler`)."""

    def autocast(self):
        return autocast(self.autocast_precision, self.device)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def _forward_backward(self, batch: torch.Tensor, is_last: bool, n: int) -> torch.Tensor:
        raise NotImplementedError

    def clip(self) -> None:
        grads = [p for p in self.module.parameters() if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(grads, self.max_grad_norm)

    def train_step(self, micro_batches):
        """Every micro-batch, then clip by the global gradient norm, step and clear gradients; the mean loss."""
        total = torch.zeros((), device=micro_batches[0].device)
        last = len(micro_batches) - 1
        for i, batch in enumerate(micro_batches):
            total += self._forward_backward(batch, i == last, len(micro_batches))
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients
        if self.max_grad_norm > 0:
            self.clip()
        if self.scaler is None:
            self.optimizer.step()
        else:  # skips the step when a gradient overflowed, and adapts the scale
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return total

    @torch.no_grad()
    def eval_loss(self, batch):
        with self.autocast():
            return self.module(input_ids=batch, labels=batch).loss.detach().float()

    @torch.no_grad()
    def generate(self, prompts, new_tokens):
        # every rank runs the same number of forwards (exactly new_tokens), so FSDP's all-gathers line up
        with self.autocast():
            return greedy_generate(self.module, prompts, new_tokens)
