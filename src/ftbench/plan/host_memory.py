"""What a cell's ranks hold in host memory, from the model's shape alone: the Slurm job's `--mem`.

Analytic and torch-free (planning runs it for every cell). Per rank it counts the process runtime plus what
the strategy keeps on the host: on CPU everything (weights, gradients, AdamW state, gathered layers,
activations); on CUDA only what is offloaded there (ZeRO's CPU optimizer state) and the one tensor a rank
reads at a time while loading. A dry run before a hub or local model is downloaded cannot know its shape.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ftbench.cell import Cell
from ftbench.files import read_json
from ftbench.launch.slurm import gpu_gres
from ftbench.plan.config import bpe_vocab_size, model_config, source_kind, tokenizer_source
from ftbench.registry import GRADIENTS, LAYERS, OPTIMIZER, PARAMETERS, STRATEGIES

GB = 2**30
RUNTIME_GB = {"cpu": 1.0, "cuda": 4.0}
"""A rank's process without the model: Python, torch, transformers, DeepSpeed, gloo/NCCL; on CUDA the
host side of the CUDA context and libraries. Measured on CPU (benchmarks/memory.py, tiny model): 0.34 GB
(ddp, fsdp, pipeline), 0.36 GB (zero3); the figure leaves room for torch.compile and DeepSpeed's op builds."""
SLACK = 1.25
"""Headroom over the estimate: a Slurm job past its --mem is killed, not reported as OOM."""
FP32, ADAMW = 4, 8
"""Bytes per parameter of an fp32 weight (master weights are fp32 in every precision) and of AdamW's state."""


@dataclass(frozen=True)
class Shape:
    """A decoder-only transformer's sizes, as its config.json gives them."""

    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    tied: bool = False
    gpt2_positions: int = 0
    """GPT-2's learned position table (rows); 0 for rotary models. GPT-2 layers also differ (ungated MLP, biases)."""

    @classmethod
    def from_config_json(cls, cfg: dict) -> Shape:
        """Llama/Mistral/Qwen2 keys, or GPT-2's (n_embd, n_layer, n_inner)."""
        hidden = cfg.get("hidden_size", cfg.get("n_embd"))
        heads = cfg.get("num_attention_heads", cfg.get("n_head"))
        inner = cfg.get("intermediate_size", cfg.get("n_inner")) or 4 * hidden
        return cls(
            hidden=hidden,
            layers=cfg.get("num_hidden_layers", cfg.get("n_layer")),
            intermediate=inner,
            vocab=cfg["vocab_size"],
            heads=heads,
            kv_heads=cfg.get("num_key_value_heads") or heads,
            tied=cfg.get("tie_word_embeddings", cfg.get("model_type") == "gpt2"),
            gpt2_positions=cfg.get("n_positions", 0) if cfg.get("model_type") == "gpt2" else 0,
        )

    @property
    def kv_width(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    @property
    def layer_params(self) -> int:
        """One decoder layer: q/o (h x h), k/v (h x kv), a gated MLP (3 x h x intermediate), two norms; GPT-2:
        fused qkv and output projections, a two-matrix MLP, biases and two LayerNorms (weight and bias)."""
        h, inner = self.hidden, self.intermediate
        if self.gpt2_positions:
            return 4 * h * h + 2 * h * inner + 9 * h + inner
        return 2 * h * h + 2 * h * self.kv_width + 3 * h * inner + 2 * h

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        head = 0 if self.tied else self.embedding_params
        final_norm = 2 * self.hidden if self.gpt2_positions else self.hidden
        positions = self.gpt2_positions * self.hidden
        return self.layers * self.layer_params + self.embedding_params + head + final_norm + positions

    def stage_params(self, stage: int, stages: int) -> int:
        """What pipeline stage `stage` of `stages` holds: its layers (split as evenly as possible, earlier
        stages taking the remainder, as ftbench.train.strategies.pipeline does), the embedding table on the first,
        the final norm and the head on the last."""
        base, extra = divmod(self.layers, stages)
        held = (base + (stage < extra)) * self.layer_params
        if stage == 0:
            held += self.embedding_params + self.gpt2_positions * self.hidden
        if stage == stages - 1:
            held += self.params - self.layers * self.layer_params - self.embedding_params
            held -= self.gpt2_positions * self.hidden
        return held

    def lora_params(self, r: int) -> int:
        """LoRA adapters (A and B) of rank r on q, k, v and o of every layer (GPT-2: the fused qkv and the
        output projection), as ftbench.train.methods places them."""
        h, kv = self.hidden, self.kv_width
        if self.gpt2_positions:
            return self.layers * r * ((h + 3 * h) + (h + h))
        return self.layers * r * ((h + h) + 2 * (h + kv) + (h + h))


def trainable_params(shape: Shape, method: str, options: dict) -> int:
    if method == "lora":
        return shape.lora_params(options.get("lora", {}).get("r", 8))
    return shape.params


def activation_bytes(shape: Shape, cell: Cell) -> int:
    """What autograd keeps for one micro-batch (fp32: each layer's inputs to its matmuls, attention and MLP
    intermediates), plus the logits and their gradient. With activation checkpointing each layer keeps only
    its input, and one layer at a time holds its intermediates again while it is recomputed."""
    tokens = cell.batch_size_per_gpu * cell.seq_len
    per_layer = tokens * (16 * shape.hidden + 3 * shape.intermediate) * FP32
    logits = 3 * tokens * shape.vocab * FP32
    if cell.activation_checkpointing == "full":
        return shape.layers * tokens * shape.hidden * FP32 + per_layer + logits
    return shape.layers * per_layer + logits


def training_state_bytes(shape: Shape, cell: Cell, options: dict) -> float:
    """Weights, gradients and optimizer state a rank of `cell` holds, wherever they live."""
    n, t, world = shape.params, trainable_params(shape, cell.method, options), cell.gpus
    gathered = 2 * shape.layer_params * FP32 + 2 * shape.embedding_params * FP32  # a layer + prefetch, the root
    strategy = STRATEGIES[cell.strategy]
    master = FP32 if strategy.zero_stage else 0  # DeepSpeed's fp32 master copy of the trained weights
    if LAYERS in strategy.shards:  # the largest stage
        share = max(shape.stage_params(s, world) for s in range(world)) / n
        return share * (n * FP32 + t * (FP32 + ADAMW))
    if PARAMETERS in strategy.shards:  # partitions of weights, (master copy,) gradients, AdamW
        return (n * FP32 + t * (FP32 + master + ADAMW)) / world + gathered
    if GRADIENTS in strategy.shards:  # a replica; gradients, master copy and AdamW partitioned, a layer's bucket
        return n * FP32 + t * (FP32 + master + ADAMW) / world + shape.layer_params * FP32
    if OPTIMIZER in strategy.shards:  # a replica and its gradients; master copy and AdamW partitioned
        return n * FP32 + t * FP32 + t * (master + ADAMW) / world
    return n * FP32 + t * (FP32 + ADAMW)  # a replica


def offloaded_bytes(shape: Shape, cell: Cell, options: dict) -> float:
    """What an offloading strategy keeps on the host beside a GPU: the fp32 master partition, its gradients
    and AdamW's state."""
    if not STRATEGIES[cell.strategy].host_offload:
        return 0.0
    t = trainable_params(shape, cell.method, options)
    return t * (2 * FP32 + ADAMW) / cell.gpus


def per_rank_gb(shape: Shape, cell: Cell, device: str, options: dict) -> float:
    """Host memory one rank of `cell` needs, with `SLACK`."""
    if device == "cpu":
        held = training_state_bytes(shape, cell, options) + activation_bytes(shape, cell)
    else:  # the weights live on the GPU; loading reads one tensor at a time through the host
        held = offloaded_bytes(shape, cell, options) + shape.embedding_params * FP32
    return SLACK * (RUNTIME_GB["cpu" if device == "cpu" else "cuda"] + held / GB)


MODELS_DIR = "resources/models"


def model_shape(config: dict, name: str, models_dir: str = MODELS_DIR) -> Shape | None:
    """The shape of model `name`: its config.json once prepared or downloaded, else (a `config:` model with a
    builtin tokenizer) its `architecture`; None while a hub or local model is not downloaded yet."""
    path = os.path.join(models_dir, name, "config.json")
    if os.path.exists(path):
        return Shape.from_config_json(read_json(path))
    model = model_config(config, name)
    tokenizer = tokenizer_source(model)
    if "architecture" not in model or source_kind(tokenizer) != "builtin":
        return None
    arch = model["architecture"]
    return Shape(
        hidden=arch["hidden_size"],
        layers=arch["num_layers"],
        intermediate=arch["intermediate_size"],
        vocab=bpe_vocab_size(tokenizer),
        heads=arch["num_heads"],
        kv_heads=arch["num_heads"],
        tied=model["source"] == "config:gpt2",
        gpt2_positions=arch.get("max_positions", 1024) if model["source"] == "config:gpt2" else 0,
    )


def cell_request_gb(config: dict, cell: Cell, shape: Shape | None) -> float | None:
    """Host memory per rank a Slurm job of `cell` asks for: `hardware.host_memory_per_rank_gb` when set, else
    the estimate (None: the model's shape is not known yet)."""
    hardware = config["hardware"]
    if hardware.get("host_memory_per_rank_gb"):
        return hardware["host_memory_per_rank_gb"]
    if shape is None:
        return None
    device = "cuda" if gpu_gres(hardware) else "cpu"  # the job asks GPUs, so its ranks run on them
    return per_rank_gb(shape, cell, device, config["options"])
