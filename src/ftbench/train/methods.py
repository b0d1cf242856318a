"""Fine-tuning methods: which parameters train. `full` trains all; `lora` adds peft LoRA adapters to the
attention projections and freezes the rest."""

from __future__ import annotations

import torch

# attention projections per model family (peft matches module-name suffixes)
ATTENTION_PROJECTIONS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gpt2": ["attn.c_attn", "attn.c_proj"],
    "falcon": ["query_key_value", "self_attention.dense"],
}


def full(model: torch.nn.Module, options: dict) -> torch.nn.Module:
    return model


def lora(model: torch.nn.Module, options: dict) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    model_type = model.config.model_type
    if model_type not in ATTENTION_PROJECTIONS:
        raise ValueError(f"method lora: no attention projections known for model_type {model_type!r}")
    config = LoraConfig(
        r=options.get("r", 8),
        lora_alpha=options.get("alpha", 16),
        lora_dropout=options.get("dropout", 0.0),
        target_modules=ATTENTION_PROJECTIONS[model_type],
        task_type="CAUSAL_LM",
    )
    # adapters keep the dtype they are built in: peft would otherwise upcast them to fp32 in a bf16 model,
    # replacing a ZeRO-3 partitioned adapter (built under zero.Init) by a plain empty tensor
    return get_peft_model(model, config, autocast_adapter_dtype=False)


METHODS = {"full": full, "lora": lora}


def apply(model: torch.nn.Module, method: str, options: dict) -> torch.nn.Module:
    return METHODS[method](model, options.get(method, {}))
