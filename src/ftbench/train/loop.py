"""The training loop: warm-up, measured steps, eval, generation. Strategy-agnostic.

The global batch of step s is the same blocks whatever the world size: a seeded permutation of the train
blocks, cut into consecutive global batches; data-parallel rank r reads its contiguous share and splits it
into micro-batches. So ddp at 1 and 2 GPUs (same global batch) see the same tokens.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from ftbench.train import schedule
from ftbench.train.metrics import StepClock, mean_over_ranks, sync
from ftbench.train.strategies.base import eager

log = logging.getLogger("ftbench.train.loop")

PROGRESS_EVERY_S = 10.0


@dataclass
class Progress:
    """How far a rank got, kept current as it runs: a rank that fails reports its phase and what it measured."""

    phase: str = "start"
    steps_done: int = 0
    step_times_s: list[float] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    """Wall-clock times of the start-up's milestones (metrics.startup)."""


class ProgressLog:
    """A line in the cell's log about every `every_s` seconds (rank 0 only): step, this rank's loss, train
    tokens/s since the last line, time left at that pace. Reading the loss syncs the device once per line;
    nothing is collective, so the steps' timing is left as it is."""

    def __init__(self, total_steps: int, tokens_per_step: int, every_s: float = PROGRESS_EVERY_S, rank: int = 0):
        self.total, self.tokens_per_step, self.every_s = total_steps, tokens_per_step, every_s
        self.active = rank == 0
        self.last_time, self.last_step = time.perf_counter(), 0

    def step_done(self, step: int, loss: torch.Tensor) -> str | None:
        """After step `step` (0-based): the line when one is due, else None."""
        now = time.perf_counter()
        if not self.active or (now - self.last_time < self.every_s and step + 1 < self.total):
            return None
        steps = step + 1 - self.last_step
        per_step = (now - self.last_time) / max(steps, 1)
        line = (
            f"step {step + 1}/{self.total}: loss {loss.item():.4f}, "
            f"{steps * self.tokens_per_step / (now - self.last_time):,.0f} train tok/s, "
            f"{per_step * (self.total - step - 1):.0f} s left"
        )
        self.last_time, self.last_step = now, step + 1
        log.info(line)
        return line


def check_enough_data(n_blocks: int, cell) -> None:
    if n_blocks < cell.global_batch_size:
        raise ValueError(
            f"cell {cell.id}: the train split has {n_blocks} blocks of {cell.seq_len} tokens, fewer than one "
            f"global batch ({cell.global_batch_size}); add data or lower the batch size"
        )


def step_blocks(order: np.ndarray, step: int, global_batch: int) -> np.ndarray:
    """Block indices of the global batch of `step` (cycles through the epoch order)."""
    return order[(step * global_batch + np.arange(global_batch)) % len(order)]


def to_tensor(blocks: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(blocks, dtype=np.int64)).to(device, non_blocking=True)


def rank_micro_batches(blocks, order, step, cell, trainer, device) -> list[torch.Tensor]:
    idx = step_blocks(order, step, cell.global_batch_size)
    share = cell.global_batch_size // trainer.data_world
    mine = np.sort(idx[trainer.data_rank * share : (trainer.data_rank + 1) * share])
    data = to_tensor(blocks[mine], device)
    return list(data.split(cell.batch_size_per_gpu))


def train(
    trainer,
    cell,
    blocks,
    warmup: int,
    measure: int,
    seed: int,
    device,
    progress: Progress | None = None,
    optimizer: dict | None = None,
) -> dict:
    """Run `warmup` untimed then `measure` timed optimizer steps; per-step times and mean losses. With an
    `optimizer` config that asks for a schedule, each step's learning rate is set before it.

    `progress` (if given) is kept current, so a rank that fails mid-way can report what it measured. The job
    checked that `blocks` hold a global batch before its process group started (`check_enough_data`)."""
    order = np.random.default_rng(seed).permutation(len(blocks))
    clock = StepClock(device)
    progress = Progress() if progress is None else progress
    progress.step_times_s = clock.step_times  # the same list: filled as steps finish
    losses = []
    progress.marks["first_step"] = time.time()  # the end of the cell's fixed cost
    rank = dist.get_rank() if dist.is_initialized() else 0
    report = ProgressLog(warmup + measure, cell.tokens_per_step, rank=rank)
    scheduled = bool(optimizer) and schedule.scheduled(optimizer)
    for step in range(warmup + measure):
        progress.steps_done = step
        # data loading is inside the step time: it is part of what the user waits for
        if step == warmup:
            clock.start()
        if scheduled:
            schedule.set_lr(trainer.optimizer, schedule.lr_at(step, warmup + measure, optimizer))
        loss = trainer.train_step(rank_micro_batches(blocks, order, step, cell, trainer, device))
        if step >= warmup:
            clock.lap()
        losses.append(loss)  # a tensor: no host sync here
        report.step_done(step, loss)
    energy_j = clock.energy_j()  # before another collective: the counter's window is the timed steps
    losses = mean_over_ranks(torch.stack(losses)).tolist()
    return {"step_times_s": clock.step_times, "losses": losses, "energy_j": energy_j}


def rank_rows(trainer, n_rows: int) -> np.ndarray:
    """This rank's eval rows: every data_world-th, the same count on every rank (sharded models need
    every rank in every forward)."""
    usable = n_rows - n_rows % trainer.data_world
    return np.arange(trainer.data_rank, usable, trainer.data_world)


def evaluate(trainer, blocks, batch_size: int, max_batches: int, device) -> dict:
    """Mean next-token loss over this job's share of the eval blocks (weighted by batch size), and the eval
    forward's throughput: tokens per second over every batch after the first (its warm-up), summed over the
    data-parallel ranks — what bench_pie's "inference tokens/s" measures."""
    mine = rank_rows(trainer, len(blocks))[: batch_size * max_batches]
    total = torch.zeros(2, device=device)
    timed_tokens, start = 0, None
    with eager():
        for first in range(0, len(mine), batch_size):
            batch = to_tensor(blocks[mine[first : first + batch_size]], device)
            total[0] += trainer.eval_loss(batch) * len(batch)
            total[1] += len(batch)
            if start is None:
                sync(device)
                start = time.perf_counter()
            else:
                timed_tokens += batch.numel()
        sync(device)
    elapsed = time.perf_counter() - start if start is not None else 0.0
    total = mean_over_ranks(total)
    throughput = timed_tokens * trainer.data_world / elapsed if timed_tokens and elapsed > 0 else None
    return {"eval_loss": (total[0] / total[1]).item(), "eval_tokens_per_s": throughput}


def generation(trainer, blocks, batch_size: int, prompt_tokens: int, new_tokens: int, device) -> dict:
    """Greedy generation of `new_tokens` after the first `prompt_tokens` of eval blocks, timed for the job;
    and its two parts: the prefill (the prompt's forward and the first token: a 1-token call, timed after
    an untimed one) and each further token's latency."""
    rows = rank_rows(trainer, len(blocks))[:batch_size]
    prompts = to_tensor(blocks[rows, :prompt_tokens], device)
    with eager():
        trainer.generate(prompts, 1)  # untimed: the first call pays one-off set-up (cache classes, kernels)
        prefill_s = _timed(lambda: trainer.generate(prompts, 1), device)[1]
        out, elapsed = _timed(lambda: trainer.generate(prompts, new_tokens), device)
    new = out.shape[1] - prompts.shape[1]
    return {
        "inference_tokens_per_s": len(prompts) * new * trainer.data_world / elapsed,
        "inference_time_s": elapsed,
        "prefill_s": prefill_s,
        "decode_latency_per_token_s": max(elapsed - prefill_s, 0.0) / (new - 1) if new > 1 else None,
        "generated_ids": out[0].tolist(),
        "prompt_len": prompts.shape[1],
    }


def _timed(call, device):
    sync(device)
    start = time.perf_counter()
    out = call()
    sync(device)
    return out, time.perf_counter() - start
