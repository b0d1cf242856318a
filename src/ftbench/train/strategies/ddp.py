"""torch DistributedDataParallel: full replica per rank, gradients all-reduced once per optimizer step.

At world size 1 the module is not wrapped: DDP would copy every gradient into its buckets and all-reduce
with itself. Above it, gradients are views into the buckets (`gradient_as_bucket_view`), one copy less.
`options.ddp.compile`: the training forward and backward run torch.compile'd.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn.parallel import DistributedDataParallel

from ftbench.train.strategies.base import DataParallelTrainer, TrainEnv, adamw, compile_requested, grad_scaler


class DDPTrainer(DataParallelTrainer):
    def __init__(self, module: torch.nn.Module, cell, env: TrainEnv):
        # one replica, allocated on the device and read into from the files (no second host copy)
        env.weights.materialize(module, env.device)
        self.module = module
        device_ids = [env.local_rank] if env.device.type == "cuda" else None
        self.wrapped = (
            # init_sync=False: every rank read the same weights, and DDP's broadcast of them would stage a
            # second copy of the model through its buckets
            DistributedDataParallel(self.module, device_ids=device_ids, gradient_as_bucket_view=True, init_sync=False)
            if env.world_size > 1
            else self.module
        )
        if compile_requested(cell, env):
            # the wrapper, so that above world 1 Dynamo splits the graph at DDP's buckets (all-reduce overlaps)
            self.wrapped.compile()
        self.scaler = grad_scaler(cell.precision, env.device)
        self.optimizer = adamw(self.module.parameters(), env, scaled=self.scaler is not None)
        self.autocast_precision, self.device = cell.precision, env.device
        self.max_grad_norm = env.max_grad_norm
        self.data_rank, self.data_world = env.rank, env.world_size

    def _forward_backward(self, batch, is_last: bool, n: int) -> torch.Tensor:
        # gradients are all-reduced only on the last micro-batch of the step
        with contextlib.nullcontext() if is_last or self.wrapped is self.module else self.wrapped.no_sync():
            with self.autocast():
                loss = self.wrapped(input_ids=batch, labels=batch).loss / n
            self.backward(loss)
        return loss.detach()


def apply(model: torch.nn.Module, cell, env: TrainEnv) -> DDPTrainer:
    return DDPTrainer(model, cell, env)
