"""torch DistributedDataParallel: full replica per rank, gradients all-reduced once per optimizer step."""

from __future__ import annotations

import contextlib

import torch
from torch.nn.parallel import DistributedDataParallel

from ftbench.strategies.base import TrainEnv, adamw, autocast, greedy_generate


class DDPTrainer:
    def __init__(self, module: torch.nn.Module, cell, env: TrainEnv):
        self.module = module.to(env.device)
        device_ids = [env.local_rank] if env.device.type == "cuda" else None
        self.wrapped = DistributedDataParallel(self.module, device_ids=device_ids)
        self.optimizer = adamw(self.module.parameters(), env)
        self.autocast = lambda: autocast(cell.precision, env.device)
        self.max_grad_norm = env.max_grad_norm
        self.data_rank, self.data_world = env.rank, env.world_size

    def train_step(self, micro_batches):
        total = torch.zeros((), device=micro_batches[0].device)
        last = len(micro_batches) - 1
        for i, batch in enumerate(micro_batches):
            # gradients are all-reduced only on the last micro-batch of the step
            sync = contextlib.nullcontext() if i == last else self.wrapped.no_sync()
            with sync:
                with self.autocast():
                    loss = self.wrapped(input_ids=batch, labels=batch).loss / len(micro_batches)
                loss.backward()
            total += loss.detach()
        if self.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total

    @torch.no_grad()
    def eval_loss(self, batch):
        with self.autocast():
            return self.module(input_ids=batch, labels=batch).loss.detach().float()

    @torch.no_grad()
    def generate(self, prompts, new_tokens):
        with self.autocast():
            return greedy_generate(self.module, prompts, new_tokens)


def apply(model: torch.nn.Module, cell, env: TrainEnv) -> DDPTrainer:
    return DDPTrainer(model, cell, env)
