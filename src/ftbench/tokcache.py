"""The packed token cache: one per (dataset, tokenizer, seq_len), shared by every model using the tokenizer.

Rows are rendered into documents (`ftbench.sources.Render`: the dataset's format and template),
batch-encoded with the fast tokenizer, joined with EOS between documents and cut into `seq_len` blocks
(no padding). Documents are split into train/eval before packing,
so no document straddles the two. Blocks live in raw numpy memmaps beside a manifest.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ftbench.files import read_json, sha256_file, write_manifest
from ftbench.sources import Render, load_rows, render_documents

log = logging.getLogger(__name__)

SPLITS = ("train", "eval")


def tokenizer_fingerprint(tokenizer_dir: str | Path) -> str:
    """sha256 of tokenizer.json: equal fingerprints tokenize identically."""
    return sha256_file(Path(tokenizer_dir) / "tokenizer.json")


def _pack(token_lists: list[list[int]], eos_id: int, seq_len: int, dtype) -> tuple[np.ndarray, int]:
    """Concatenate documents with EOS after each, cut into full blocks; return blocks and dropped tail."""
    lengths = np.fromiter((len(t) + 1 for t in token_lists), dtype=np.int64, count=len(token_lists))
    flat = np.empty(int(lengths.sum()), dtype=dtype)
    pos = 0
    for tokens, n in zip(token_lists, lengths, strict=True):
        flat[pos : pos + n - 1] = tokens
        flat[pos + n - 1] = eos_id
        pos += n
    n_blocks = len(flat) // seq_len
    return flat[: n_blocks * seq_len].reshape(n_blocks, seq_len), len(flat) - n_blocks * seq_len


def build(
    dataset_dir: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    template: str | Render,
    seq_len: int,
    eval_fraction: float,
    seed: int,
) -> dict:
    from transformers import AutoTokenizer

    render = template if isinstance(template, Render) else Render(template=template)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {tokenizer_dir} has no eos_token: documents are packed with EOS between them")
    docs = render_documents(load_rows(dataset_dir), render)
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(docs) * eval_fraction))
    split_docs = {"eval": [docs[i] for i in order[:n_eval]], "train": [docs[i] for i in order[n_eval:]]}
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.uint32
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = {}
    for split in SPLITS:
        encodings = tokenizer.backend_tokenizer.encode_batch(split_docs[split], add_special_tokens=False)
        blocks, dropped = _pack([e.ids for e in encodings], tokenizer.eos_token_id, seq_len, dtype)
        if len(blocks) == 0:
            raise ValueError(
                f"token cache {out_dir}: the {split} split has fewer than seq_len={seq_len} tokens "
                f"({dropped}); add rows or change dataset.eval_fraction"
            )
        mm = np.lib.format.open_memmap(out_dir / f"{split}.npy", mode="w+", dtype=dtype, shape=blocks.shape)
        mm[:] = blocks
        mm.flush()
        del mm
        stats[split] = {"documents": len(split_docs[split]), "blocks": len(blocks), "dropped_tail_tokens": dropped}
        log.info("%s: %d documents -> %d blocks of %d tokens", split, len(split_docs[split]), len(blocks), seq_len)
    return write_manifest(
        out_dir,
        kind="token_cache",
        seq_len=seq_len,
        dtype=np.dtype(dtype).name,
        eos_id=tokenizer.eos_token_id,
        vocab_size=len(tokenizer),
        tokenizer_fingerprint=tokenizer_fingerprint(tokenizer_dir),
        dataset=read_json(Path(dataset_dir) / "manifest.json")["files"],
        template=render.template,
        render=asdict(render),
        eval_fraction=eval_fraction,
        seed=seed,
        splits=stats,
        tokens={s: stats[s]["blocks"] * seq_len for s in SPLITS},
    )


def open_split(cache_dir: str | Path, split: str) -> np.ndarray:
    """A read-only [blocks, seq_len] memmap of one split, checked against the manifest."""
    cache_dir = Path(cache_dir)
    manifest = read_json(cache_dir / "manifest.json")
    blocks = np.load(cache_dir / f"{split}.npy", mmap_mode="r")
    expected = (manifest["splits"][split]["blocks"], manifest["seq_len"])
    if blocks.shape != expected or blocks.dtype.name != manifest["dtype"]:
        raise ValueError(
            f"token cache {cache_dir}/{split}.npy is {blocks.shape} {blocks.dtype}, manifest says "
            f"{expected} {manifest['dtype']}; delete the directory to rebuild it"
        )
    return blocks
