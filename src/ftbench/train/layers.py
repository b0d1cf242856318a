"""The decoder layers of a Hugging Face causal LM, and what is applied to them layer by layer."""

from __future__ import annotations

import torch

ACTIVATION_CHECKPOINTING = ("none", "full")
"""`matrix.activation_checkpointing` values: `full` recomputes every decoder layer's forward in backward."""


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's stack of decoder layers: the ModuleList as long as `config.num_hidden_layers`
    (found by shape, so Llama, GPT-2 and peft-wrapped models all work)."""
    n_layers = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return module
    raise ValueError(f"no ModuleList of {n_layers} decoder layers in {type(model).__name__}")


def checkpoint_activations(model: torch.nn.Module, mode: str) -> None:
    """`full`: each decoder layer keeps only its input and recomputes its forward in backward.

    transformers' own per-layer checkpointing (`GradientCheckpointingLayer`), non-reentrant
    `torch.utils.checkpoint`: what Trainer, accelerate and DeepSpeed's HF integration run, and what torch's
    `checkpoint_wrapper` does underneath. It wraps the layer's whole `__call__`, so FSDP2's and ZeRO-3's
    gather hooks run inside the recomputation; parameter names stay as they are, so each rank still reads
    its own slices of the checkpoint by name. Applied on the meta model, before any strategy wraps it."""
    if mode == "none":
        return
    if mode != "full":
        raise ValueError(f"activation_checkpointing {mode!r} is not one of {ACTIVATION_CHECKPOINTING}")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layers = decoder_layers(model)
    if not all(getattr(layer, "gradient_checkpointing", False) for layer in layers):
        raise ValueError(f"{type(model).__name__}: its decoder layers do not take transformers' checkpointing")
