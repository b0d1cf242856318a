"""The learning rate of each optimizer step: `optimizer.lr`, after `optimizer.warmup_steps` of linear warm-up,
then constant or cosine down to a tenth of it by the last step. Set on the optimizer's parameter groups
before each step, so every strategy (DeepSpeed's engine included: its optimizer steps these groups) follows
the same schedule without its own scheduler."""

from __future__ import annotations

import math

MIN_LR_RATIO = 0.1
"""Where cosine decay ends, as a share of `lr` (the usual fine-tuning recipes' floor)."""


def lr_at(step: int, total_steps: int, optimizer: dict) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total_steps`, from the `optimizer` config."""
    lr, warmup = optimizer["lr"], optimizer.get("warmup_steps", 0)
    if step < warmup:
        return lr * (step + 1) / warmup
    if optimizer.get("schedule", "constant") == "constant":
        return lr
    decay_steps = max(total_steps - warmup - 1, 1)
    progress = min((step - warmup) / decay_steps, 1.0)
    return lr * (MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress)))


def scheduled(optimizer: dict) -> bool:
    """Whether the config asks for more than the constant `lr` every optimizer is built with."""
    return bool(optimizer.get("warmup_steps")) or optimizer.get("schedule", "constant") != "constant"


def set_lr(torch_optimizer, lr: float) -> None:
    for group in torch_optimizer.param_groups:
        group["lr"] = lr
