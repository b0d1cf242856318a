"""Pipeline parallelism with torch.distributed.pipelining: the decoder layers split into one stage per GPU
(embeddings with the first, final norm + LM head with the last), a GPipe or 1F1B schedule over the
micro-batches of each step. Every stage reads the same batch; only the last sees the loss, which it
broadcasts. Tied input/output embeddings get their gradients summed between first and last stage."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

from ftbench.train.layers import decoder_layers
from ftbench.train.strategies.base import TrainEnv, adamw, autocast
from ftbench.train.weights import checkpoint_names

SCHEDULES = {"1F1B": Schedule1F1B, "GPipe": ScheduleGPipe}


class ZeroPositions(nn.Module):
    """Stands in for GPT-2's position embedding on later stages: positions were added on the first."""

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden

    def forward(self, position_ids):
        return torch.zeros(*position_ids.shape, self.hidden, device=position_ids.device)


def _cut_llama(decoder, first: bool, last: bool) -> None:
    if not first:
        decoder.embed_tokens = None
    if not last:
        decoder.norm = nn.Identity()


def _cut_gpt2(decoder, first: bool, last: bool) -> None:
    if not first:
        decoder.wte, decoder.wpe, decoder.drop = None, ZeroPositions(decoder.embed_dim), nn.Identity()
    if not last:
        decoder.ln_f = nn.Identity()


# model_type -> how to drop what a stage does not run, keeping Hugging Face's own forward
CUTS = {"llama": _cut_llama, "mistral": _cut_llama, "qwen2": _cut_llama, "gpt2": _cut_gpt2}


def stage_bounds(n_layers: int, n_stages: int, stage: int) -> tuple[int, int]:
    """Layers [lo, hi) of `stage`: as even as possible, earlier stages take the remainder."""
    if n_stages > n_layers:
        raise ValueError(f"pipeline: {n_stages} stages need at least {n_stages} decoder layers, got {n_layers}")
    base, extra = divmod(n_layers, n_stages)
    lo = stage * base + min(stage, extra)
    return lo, lo + base + (1 if stage < extra else 0)


class Stage(nn.Module):
    """Decoder layers [lo, hi) of a causal LM; embeddings on the first stage, norm + head on the last."""

    def __init__(self, causal_lm: nn.Module, stage: int, n_stages: int):
        super().__init__()
        model_type = causal_lm.config.model_type
        if model_type not in CUTS:
            raise ValueError(f"pipeline: no stage split known for model_type {model_type!r} (known: {sorted(CUTS)})")
        self.first, self.last = stage == 0, stage == n_stages - 1
        self.lo, self.hi = stage_bounds(causal_lm.config.num_hidden_layers, n_stages, stage)
        layers = decoder_layers(causal_lm)
        kept = nn.ModuleList(layers[self.lo : self.hi])
        for local, layer in enumerate(kept):  # a stage keeps its own KV cache, indexed from 0
            for sub in layer.modules():
                if hasattr(sub, "layer_idx"):
                    sub.layer_idx = local
        decoder = causal_lm.get_decoder()
        for name, child in decoder.named_children():
            if child is layers:
                setattr(decoder, name, kept)
        CUTS[model_type](decoder, self.first, self.last)
        self.decoder = decoder
        self.head = causal_lm.get_output_embeddings() if self.last else None

    def forward(self, x, cache=None):
        inputs = {"input_ids": x} if self.first else {"inputs_embeds": x}
        hidden = self.decoder(**inputs, past_key_values=cache, use_cache=cache is not None).last_hidden_state
        return self.head(hidden) if self.last else hidden


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting token t+1 from position t (Hugging Face's causal-LM loss)."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten())


class PipelineTrainer:
    def __init__(self, causal_lm: nn.Module, cell, env: TrainEnv, schedule: str):
        self.rank, self.world, self.device = env.rank, env.world_size, env.device
        names = checkpoint_names(causal_lm)
        self.stage = Stage(causal_lm, env.rank, env.world_size)
        # cut on the meta device: a stage allocates and reads only its own layers (and embeddings or head)
        env.weights.materialize(self.stage, env.device, names)
        self.module = self.stage
        self.config = causal_lm.config
        self.autocast = lambda: autocast(cell.precision, env.device)
        self.n_micro = cell.grad_accum_steps
        pipe_stage = PipelineStage(self.stage, env.rank, env.world_size, env.device)
        self.schedule = SCHEDULES[schedule](pipe_stage, n_microbatches=self.n_micro, loss_fn=next_token_loss)
        self.optimizer = adamw(self.stage.parameters(), env)
        self.max_grad_norm = env.max_grad_norm
        self.data_rank, self.data_world = 0, 1  # every stage reads the whole batch
        self.tied = None
        if getattr(causal_lm.config, "tie_word_embeddings", False) and env.world_size > 1:
            group = dist.new_group([0, env.world_size - 1])  # collective: every rank calls it
            if self.stage.first:
                self.tied = (group, self.stage.decoder.get_input_embeddings().weight)
            elif self.stage.last:
                self.tied = (group, self.stage.head.weight)

    def _broadcast_from_last(self, value: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        out = value if self.stage.last else torch.empty_like(like)
        dist.broadcast(out, src=self.world - 1)
        return out

    def _clip(self) -> None:
        """Clip by the norm over every stage's gradients (a tied weight counted once)."""
        params = [p for p in self.stage.parameters() if p.grad is not None]
        counted = [p for p in params if not (self.tied and self.stage.last and p is self.tied[1])]
        sq = torch.zeros((), device=self.device)
        for p in counted:
            sq += p.grad.float().pow(2).sum()
        dist.all_reduce(sq)
        coef = torch.clamp(self.max_grad_norm / (sq.sqrt() + 1e-6), max=1.0)
        for p in params:
            p.grad.mul_(coef)

    def train_step(self, micro_batches):
        batch = torch.cat(micro_batches)
        losses: list[torch.Tensor] = []
        with self.autocast():
            if self.stage.first:
                self.schedule.step(batch, target=batch if self.stage.last else None, losses=losses)
            elif self.stage.last:
                self.schedule.step(target=batch, losses=losses)
            else:
                self.schedule.step()
        if self.tied:
            dist.all_reduce(self.tied[1].grad, group=self.tied[0])
        if self.max_grad_norm > 0:
            self._clip()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        mean = torch.stack(losses).mean().detach().float() if losses else None
        return self._broadcast_from_last(mean, torch.zeros((), device=self.device))

    def _forward(self, x: torch.Tensor, cache=None) -> torch.Tensor | None:
        """Forward-only through the stages by point-to-point sends (eval, generation); logits on the last."""
        if not self.stage.first:
            h = torch.empty(*x.shape, self.config.hidden_size, device=self.device)
            dist.recv(h, src=self.rank - 1)
            x = h
        with self.autocast():
            out = self.stage(x, cache)
        if self.stage.last:
            return out
        dist.send(out.float().contiguous(), dst=self.rank + 1)
        return None

    @torch.no_grad()
    def eval_loss(self, batch):
        logits = self._forward(batch)
        loss = next_token_loss(logits, batch).float() if logits is not None else None
        return self._broadcast_from_last(loss, torch.zeros((), device=self.device))

    @torch.no_grad()
    def generate(self, prompts, new_tokens):
        from transformers import DynamicCache

        cache, seq, step_input = DynamicCache(), prompts, prompts
        for _ in range(new_tokens):
            logits = self._forward(step_input, cache)
            token = logits[:, -1].argmax(-1, keepdim=True) if logits is not None else None
            step_input = self._broadcast_from_last(token, prompts[:, :1])
            seq = torch.cat([seq, step_input], dim=1)
        return seq


def apply(model: nn.Module, cell, env: TrainEnv) -> PipelineTrainer:
    return PipelineTrainer(model, cell, env, env.options.get("pipeline", {}).get("schedule", "1F1B"))
