"""Sources: each ends in a directory plus a manifest (source, revision or seed, file hashes).

Built-in kinds (no network): `builtin:customer_support` rows, `builtin:bpe-<vocab>` tokenizers trained on
the dataset, and `config:llama` / `config:gpt2` models random-initialised from a few numbers.
"""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path

from ftbench.config import ConfigError, bpe_vocab_size
from ftbench.files import atomic_write_text, read_json, write_manifest

log = logging.getLogger(__name__)

DATA_FILE = "data.jsonl"
EOS = "<|endoftext|>"


def prepare_dataset(source: str, out_dir: str | Path, num_rows: int, seed: int) -> dict:
    """Materialise a dataset source as `data.jsonl` + manifest in `out_dir`."""
    from ftbench.builtin_data import customer_support_rows

    if source != "builtin:customer_support":
        raise ConfigError(f"dataset.source: unsupported source {source!r}")
    out_dir = Path(out_dir)
    rows = customer_support_rows(num_rows, seed)
    atomic_write_text(out_dir / DATA_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    log.info("wrote %d rows to %s", len(rows), out_dir / DATA_FILE)
    return write_manifest(out_dir, kind="dataset", source=source, revision="builtin-v1", seed=seed, rows=len(rows))


def load_rows(dataset_dir: str | Path) -> list[dict]:
    with open(Path(dataset_dir) / DATA_FILE, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def render_documents(rows: list[dict], template: str) -> list[str]:
    """One document per row; a column the template names but the rows lack is a config error."""
    fields = template_fields(template)
    if rows:
        missing = [f for f in fields if f not in rows[0]]
        if missing:
            raise ConfigError(f"dataset.template: column(s) {missing} not in the dataset (columns: {sorted(rows[0])})")
    return [template.format_map(row) for row in rows]


def train_tokenizer(source: str, dataset_dir: str | Path, template: str, out_dir: str | Path) -> dict:
    """Train a byte-level BPE on the rendered dataset and save it in Hugging Face format."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    vocab = bpe_vocab_size(source)
    docs = render_documents(load_rows(dataset_dir), template)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    out_dir = Path(out_dir)
    fast.save_pretrained(out_dir)
    dataset_manifest = read_json(Path(dataset_dir) / "manifest.json")
    log.info("trained %s: %d tokens in vocabulary", source, len(fast))
    return write_manifest(
        out_dir, kind="tokenizer", source=source, dataset=dataset_manifest["files"], vocab_size=len(fast)
    )


def _architecture_config(family: str, arch: dict, tokenizer):
    from transformers import GPT2Config, LlamaConfig

    common = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    max_positions = arch.get("max_positions", 1024)
    if family == "llama":
        return LlamaConfig(
            hidden_size=arch["hidden_size"],
            num_hidden_layers=arch["num_layers"],
            num_attention_heads=arch["num_heads"],
            num_key_value_heads=arch["num_heads"],
            intermediate_size=arch["intermediate_size"],
            max_position_embeddings=max_positions,
            tie_word_embeddings=False,
            **common,
        )
    if family == "gpt2":
        return GPT2Config(
            n_embd=arch["hidden_size"],
            n_layer=arch["num_layers"],
            n_head=arch["num_heads"],
            n_inner=arch["intermediate_size"],
            n_positions=max_positions,
            **common,
        )
    raise ConfigError(f"models[].source: unknown architecture family config:{family}")


def prepare_model(model: dict, tokenizer_dir: str | Path, out_dir: str | Path, seed: int) -> dict:
    """Random-initialise a `config:<family>` model (seeded) and save it with its tokenizer, HF format."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kind, _, family = model["source"].partition(":")
    if kind != "config":
        raise ConfigError(f"models[{model['name']}].source: unsupported source {model['source']!r}")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = _architecture_config(family, model["architecture"], tokenizer)
    torch.manual_seed(seed)
    net = AutoModelForCausalLM.from_config(cfg)
    out_dir = Path(out_dir)
    net.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in net.parameters())
    log.info("initialised %s (%s): %.2fM parameters", model["name"], model["source"], n_params / 1e6)
    return write_manifest(
        out_dir,
        kind="model",
        source=model["source"],
        seed=seed,
        architecture=model["architecture"],
        parameters=n_params,
    )
