"""What every strategy gives the loop, and what the loop gives every strategy."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from typing import Protocol

import torch


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


def autocast(precision: str, device: torch.device):
    """bf16: autocast around forward with fp32 master weights; fp32: nothing."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def adamw(params, env: TrainEnv) -> torch.optim.Optimizer:
    """The optimizer every strategy uses (DeepSpeed's engine wraps the same one), so strategies differ only
    in parallelism. Fused: one kernel over all tensors instead of a Python loop per parameter (on CPU the
    default is that loop)."""
    return torch.optim.AdamW(
        [p for p in params if p.requires_grad],
        lr=env.lr,
        weight_decay=env.weight_decay,
        betas=(0.9, 0.95),
        fused=True,
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


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's stack of decoder layers: the ModuleList as long as `config.num_hidden_layers`
    (found by shape, so Llama, GPT-2 and peft-wrapped models all work)."""
    n_layers = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return module
    raise ValueError(f"no ModuleList of {n_layers} decoder layers in {type(model).__name__}")


def accumulate_and_step(micro_batches, forward_backward, module, optimizer, max_grad_norm: float) -> torch.Tensor:
    """One optimizer step over gradient-accumulation micro-batches: `forward_backward(batch, is_last, n)`
    runs one micro-batch (its loss scaled by 1/n) and returns the detached loss; then clip by the global
    gradient norm, step and clear gradients. The mean loss of the step is returned."""
    total = torch.zeros((), device=micro_batches[0].device)
    last = len(micro_batches) - 1
    for i, batch in enumerate(micro_batches):
        total += forward_backward(batch, i == last, len(micro_batches))
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.grad is not None], max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total
