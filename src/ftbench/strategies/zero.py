"""DeepSpeed ZeRO stages 1-3 (optionally optimizer state offloaded to CPU) through one engine, with the same
torch AdamW as the other strategies. Launched by torchrun like everything else: the process group exists
already, DeepSpeed only joins it. bf16 = DeepSpeed's bf16 mode (bf16 weights, fp32 master copy)."""

from __future__ import annotations

import torch

from ftbench.strategies.base import TrainEnv, adamw, greedy_generate


def ds_config(cell, env: TrainEnv, stage: int, offload: bool) -> dict:
    zero = {"stage": stage}
    if offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": env.device.type == "cuda"}
    return {
        "train_batch_size": cell.global_batch_size,
        "train_micro_batch_size_per_gpu": cell.batch_size_per_gpu,
        "gradient_accumulation_steps": cell.grad_accum_steps,
        "gradient_clipping": env.max_grad_norm,
        "zero_optimization": zero,
        "zero_force_ds_cpu_optimizer": False,  # keep torch AdamW, also when offloading
        "bf16": {"enabled": cell.precision == "bf16"},
        "steps_per_print": 2**31 - 1,
    }


class ZeroTrainer:
    def __init__(self, module: torch.nn.Module, cell, env: TrainEnv, stage: int, offload: bool):
        import deepspeed

        self.config = ds_config(cell, env, stage, offload)
        module.to(env.device)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=module, optimizer=adamw(module.parameters(), env), config=self.config, dist_init_required=False
        )
        self.module = self.engine.module
        self.data_rank, self.data_world = env.rank, env.world_size

    def train_step(self, micro_batches):
        # the engine scales each loss by 1/accumulation and steps the optimizer on the last micro-batch
        total = torch.zeros((), device=micro_batches[0].device)
        for batch in micro_batches:
            loss = self.engine(input_ids=batch, labels=batch).loss
            self.engine.backward(loss)
            self.engine.step()
            total += loss.detach().float() / len(micro_batches)
        return total

    @torch.no_grad()
    def eval_loss(self, batch):
        return self.engine(input_ids=batch, labels=batch).loss.detach().float()

    @torch.no_grad()
    def generate(self, prompts, new_tokens):
        return greedy_generate(self.module, prompts, new_tokens)


def apply(model: torch.nn.Module, cell, env: TrainEnv, stage: int, offload: bool = False) -> ZeroTrainer:
    return ZeroTrainer(model, cell, env, stage, offload)
