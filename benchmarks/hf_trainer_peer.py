"""The peer of benchmarks/vs_trainer.py: transformers' Trainer (the run_clm path) on ftbench's packed token
cache, under torchrun. Global batch g of step s holds the same blocks as ftbench's (a seeded permutation cut
into consecutive global batches), so both train on the same tokens in the same order.

Timing: a callback notes the time at the end of the warm-up and of the last step; tokens/s counts the
measured steps only (Trainer synchronises ranks every step through DDP's all-reduce).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

from ftbench.data import tokcache


class Blocks(torch.utils.data.Dataset):
    """Blocks in ftbench's order: batch b of the epoch is global batch b of ftbench's loop."""

    def __init__(self, blocks: np.ndarray, order: np.ndarray, steps: int, global_batch: int, world: int, rank: int):
        share = global_batch // world
        self.rows = []
        for step in range(steps):
            idx = order[(step * global_batch + np.arange(global_batch)) % len(order)]
            self.rows += list(np.sort(idx[rank * share : (rank + 1) * share]))
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        ids = torch.from_numpy(np.asarray(self.blocks[self.rows[i]], dtype=np.int64))
        return {"input_ids": ids, "labels": ids}


class RankLocalTrainer(Trainer):
    """Each rank reads its own pre-sharded rows in order (ftbench's sharding), not a DistributedSampler's."""

    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)

    def get_train_dataloader(self):
        return torch.utils.data.DataLoader(
            self.train_dataset, batch_size=self.args.per_device_train_batch_size, sampler=self._get_train_sampler()
        )


class Clock(TrainerCallback):
    def __init__(self, warmup: int):
        self.warmup, self.marks = warmup, {}

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in (self.warmup, state.max_steps):
            self.marks[state.global_step] = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--model", "--cache", "--out", "--workdir"):
        parser.add_argument(name, required=True)
    for name in ("--bs", "--warmup", "--measure"):
        parser.add_argument(name, type=int, required=True)
    parser.add_argument("--compile", action="store_true", help="TrainingArguments(torch_compile=True)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    blocks = tokcache.open_split(args.cache, "train")
    order = np.random.default_rng(0).permutation(len(blocks))
    steps = args.warmup + args.measure
    data = Blocks(blocks, order, steps, args.bs * world, world, rank)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    training = TrainingArguments(
        output_dir=args.workdir,
        per_device_train_batch_size=args.bs,
        max_steps=steps,
        learning_rate=1e-3,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        lr_scheduler_type="constant",
        optim="adamw_torch_fused",
        logging_strategy="no",
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=True,
        ddp_backend="gloo",
        ddp_find_unused_parameters=False,  # what a user tuning for speed sets (default True costs a graph walk)
        seed=0,
        torch_compile=args.compile,
    )
    clock = Clock(args.warmup)
    RankLocalTrainer(model=model, args=training, train_dataset=data, callbacks=[clock]).train()
    elapsed = clock.marks[steps] - clock.marks[args.warmup]
    tokens = args.measure * args.bs * world * blocks.shape[1]
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump({"train_tokens_per_s": tokens / elapsed, "elapsed_s": elapsed}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
