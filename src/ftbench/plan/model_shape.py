"""A model's shape from its config.json or its `architecture`, without torch: what planning checks a cell
against and what the memory estimate counts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ftbench.errors import ConfigError
from ftbench.files import read_json
from ftbench.plan.builds import RESOURCES, model_dir
from ftbench.plan.config import bpe_vocab_size, local_path, model_config, source_kind, tokenizer_source


def max_positions(config: str | Path | dict) -> int | None:
    """The longest sequence a model's config.json (a path, or its content) allows (max_position_embeddings,
    or GPT-2's n_positions)."""
    cfg = config if isinstance(config, dict) else read_json(config)
    return cfg.get("max_position_embeddings", cfg.get("n_positions"))


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
    model_type: str = ""
    """config.json's `model_type` (`llama`, `gpt2`, ...)."""
    falcon_two_norms: bool = False
    """Falcon's new decoder architecture: a LayerNorm before attention and one before the MLP."""

    @classmethod
    def from_config_json(cls, cfg: dict) -> Shape:
        """Llama/Mistral/Qwen2 keys, GPT-2's (n_embd, n_layer, n_inner) or Falcon's (multi-query attention,
        `ffn_hidden_size`)."""
        hidden = cfg.get("hidden_size", cfg.get("n_embd"))
        heads = cfg.get("num_attention_heads", cfg.get("n_head"))
        inner = cfg.get("intermediate_size", cfg.get("n_inner", cfg.get("ffn_hidden_size"))) or 4 * hidden
        falcon = cfg.get("model_type") == "falcon"
        kv_heads = cfg.get("num_key_value_heads") or heads
        if falcon:  # Falcon-7B: multi-query; the new architecture (40B, 180B): num_kv_heads
            new = cfg.get("new_decoder_architecture")
            kv_heads = cfg.get("num_kv_heads") or heads if new else (1 if cfg.get("multi_query", True) else heads)
        return cls(
            hidden=hidden,
            layers=cfg.get("num_hidden_layers", cfg.get("n_layer")),
            intermediate=inner,
            vocab=cfg["vocab_size"],
            heads=heads,
            kv_heads=kv_heads,
            tied=cfg.get("tie_word_embeddings", cfg.get("model_type") in ("gpt2", "falcon")),
            gpt2_positions=cfg.get("n_positions", 0) if cfg.get("model_type") == "gpt2" else 0,
            model_type=cfg.get("model_type", ""),
            falcon_two_norms=falcon and bool(cfg.get("new_decoder_architecture")),
        )

    @property
    def tensor_parallel_plan(self) -> bool:
        """transformers gives this family a tensor-parallel plan of column- and row-wise linears only (what
        ftbench's TP applies); GPT-2 (fused qkv) and Falcon have none. The job checks the model itself."""
        return self.model_type in TP_PLAN_MODEL_TYPES

    def tensor_parallel_problem(self, tp: int) -> str | None:
        """Why this model cannot be split over `tp` ranks (None: it can)."""
        if not self.tensor_parallel_plan:
            return f"model type {self.model_type or '?'!r} has no column/row-wise tensor-parallel plan"
        for name, count in (("attention heads", self.heads), ("KV heads", self.kv_heads)):
            if count % tp:
                return f"its {count} {name} are not divisible by the TP degree {tp}"
        return None

    @property
    def norm_params(self) -> int:
        """A decoder layer's norm weights: replicated, not split, by tensor parallelism."""
        if self.model_type == "falcon":  # one LayerNorm (weight and bias); the new architecture has two
            return (4 if self.falcon_two_norms else 2) * self.hidden
        return 4 * self.hidden if self.gpt2_positions else 2 * self.hidden

    def tp_params(self, tp: int) -> int:
        """What one rank of a TP group of `tp` holds: its 1/tp of every layer's linears, the norms, the
        embedding and the head whole (ftbench's plan leaves them replicated)."""
        split = self.layers * (self.layer_params - self.norm_params)
        return self.params - split + split // tp

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
        if self.model_type == "falcon":  # fused qkv, dense, an ungated MLP (no biases), its LayerNorms
            return h * (h + 2 * self.kv_width) + h * h + 2 * h * inner + self.norm_params
        return 2 * h * h + 2 * h * self.kv_width + 3 * h * inner + 2 * h

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        head = 0 if self.tied else self.embedding_params
        final_norm = 2 * self.hidden if self.gpt2_positions or self.model_type == "falcon" else self.hidden
        positions = self.gpt2_positions * self.hidden
        return self.layers * self.layer_params + self.embedding_params + head + final_norm + positions

    def stage_layers(self, stage: int, stages: int) -> int:
        """Decoder layers of pipeline stage `stage` of `stages`: split as evenly as possible, earlier stages
        taking the remainder, as ftbench.train.strategies.pipeline does."""
        base, extra = divmod(self.layers, stages)
        return base + (stage < extra)

    def stage_params(self, stage: int, stages: int) -> int:
        """What pipeline stage `stage` of `stages` holds: its layers, the embedding table on the first, the
        final norm and the head on the last."""
        held = self.stage_layers(stage, stages) * self.layer_params
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


TP_PLAN_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})
"""Families whose transformers TP plan is column/row-wise linears only (Qwen3's adds replicated q/k norms)."""


def shape_file(model: dict) -> str | None:
    """The config.json that gives model `model`'s shape before it is prepared: `shape: local:<path>` (the file,
    or a directory holding it), else a `local:` model's own; None for a hub or `config:` model without one."""
    spec = model.get("shape") or (model["source"] if source_kind(model["source"]) == "local" else None)
    if spec is None:
        return None
    path = local_path(spec)
    return os.path.join(path, "config.json") if os.path.isdir(path) else path


def model_shape(config: dict, name: str, resources: str = RESOURCES) -> Shape | None:
    """The shape of model `name`: its config.json once prepared or downloaded; before that the file its
    `shape` key names (or a local model's own), or a `config:` model's `architecture` (with a builtin
    tokenizer); None while a hub model is neither downloaded nor given a `shape`."""
    path = os.path.join(model_dir(config, name, resources), "config.json")
    if os.path.exists(path):
        return Shape.from_config_json(read_json(path))
    model = model_config(config, name)
    declared = shape_file(model)
    if declared is not None:
        if not os.path.isfile(declared):
            key = "shape" if model.get("shape") else "source"
            raise ConfigError(f"models[{name}].{key}: {declared} is not a config.json file")
        return Shape.from_config_json(read_json(declared))
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
        model_type=model["source"].removeprefix("config:"),
    )
