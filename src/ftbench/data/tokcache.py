"""The packed token cache: one per (dataset, tokenizer, seq_len), shared by every model using the tokenizer.

Rows are rendered into documents (`ftbench.data.sources.Render`: the dataset's format and template),
batch-encoded with the fast tokenizer (a GPT-2 style byte-level BPE encodes each distinct line once, see
`_SEGMENT`), joined with EOS between documents and cut into `seq_len` blocks (no padding). Documents are
split into train/eval before packing, so no document straddles the two. Blocks live in raw numpy memmaps
beside a manifest.
"""

from __future__ import annotations

import gc
import logging
import random
import re
from contextlib import contextmanager
from dataclasses import asdict
from itertools import chain, repeat
from pathlib import Path

import numpy as np

from ftbench.data.sources import Render, load_rows, render_documents
from ftbench.files import (
    HASH_BUDGET_BYTES,
    CorruptResource,
    read_json,
    rebuild_hint,
    sha256_file,
    verify_manifest,
    write_manifest,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "eval")
REBUILD_RULE = "build_token_cache"


def verify(cache_dir: str | Path, hash_budget: int | None = HASH_BUDGET_BYTES) -> dict:
    """The cache's manifest, once its files are the ones it records: sizes always, sha256 of the files
    within `hash_budget` bytes (`None`: all). A truncated or corrupted split is
    refused naming the file and how to rebuild it, never trained on."""
    return verify_manifest(cache_dir, hash_budget=hash_budget, rebuild=REBUILD_RULE, what="token cache")


def tokenizer_fingerprint(tokenizer_dir: str | Path) -> str:
    """sha256 of tokenizer.json: equal fingerprints tokenize identically."""
    return sha256_file(Path(tokenizer_dir) / "tokenizer.json")


def _stream(token_lists, eos_id: int, dtype) -> np.ndarray:
    """The documents' tokens, each followed by EOS, as one flat array."""
    count = sum(map(len, token_lists)) + len(token_lists)
    tokens = chain.from_iterable(chain.from_iterable(zip(token_lists, repeat((eos_id,)))))
    return np.fromiter(tokens, dtype=dtype, count=count)


def _blocks(stream: np.ndarray, seq_len: int) -> tuple[np.ndarray, int]:
    """Cut a token stream into full `seq_len` blocks; return the blocks and the dropped tail."""
    n_blocks = len(stream) // seq_len
    return stream[: n_blocks * seq_len].reshape(n_blocks, seq_len), len(stream) - n_blocks * seq_len


def _pack(token_lists: list[list[int]], eos_id: int, seq_len: int, dtype) -> tuple[np.ndarray, int]:
    """Concatenate documents with EOS after each, cut into full blocks; return blocks and dropped tail."""
    return _blocks(_stream(token_lists, eos_id, dtype), seq_len)


_SEGMENT = re.compile(r"(?:\n|^)[^\n]*(?:(?<![!-~\w])\n[^\n]*)*")
"""A document's segments: cut before each newline that follows a character that is surely no whitespace
(printable ASCII, a letter or a digit). No piece of the GPT-2 split regex (byte-level pre-tokenizer) holds a
non-space followed by a space, the regex only looks ahead, and a cut there ends no run of spaces early; so
the pre-tokenizer splits a document at every such cut and the tokenizer encodes it as the concatenation of
its segments' encodings. Templated corpora repeat most segments (template lines, boilerplate answers), so
each distinct segment is encoded once."""


def _segmentable(backend, docs: list[str]) -> bool:
    """Whether `backend` encodes a document as the concatenation of its `_SEGMENT`s: no normalizer, the
    byte-level pre-tokenizer with the GPT-2 regex and no prefix space, a deterministic model, no
    padding/truncation, a post-processor that adds nothing without special tokens, and no added token in
    the text (added tokens are matched before pre-tokenization, possibly stripping neighbouring spaces)."""
    from tokenizers import models, pre_tokenizers, processors

    pre = backend.pre_tokenizer
    if backend.normalizer is not None or not isinstance(pre, pre_tokenizers.ByteLevel):
        return False
    if pre.add_prefix_space or not pre.use_regex:
        return False
    if isinstance(backend.model, models.BPE) and backend.model.dropout:
        return False
    post = backend.post_processor
    if post is not None and not isinstance(post, processors.TemplateProcessing | processors.ByteLevel):
        return False
    if backend.padding is not None or backend.truncation is not None:
        return False
    text = "\0".join(docs)
    return not any(t.content in text for t in backend.get_added_tokens_decoder().values())


def _encode_segmented(backend, split_docs: dict[str, list[str]], eos_id: int, dtype) -> dict[str, np.ndarray]:
    """Token streams per split (see `_SEGMENT`): each distinct segment encoded once, then gathered."""
    per_doc = dict.fromkeys(doc for docs in split_docs.values() for doc in docs)
    per_doc.update(zip(per_doc, map(_SEGMENT.findall, per_doc), strict=True))
    segments = {split: [per_doc[doc] for doc in docs] for split, docs in split_docs.items()}
    unique = dict.fromkeys(chain.from_iterable(chain.from_iterable(segments.values())))
    unique = dict(zip(unique, range(len(unique)), strict=True))
    encodings = backend.encode_batch_fast(list(unique), add_special_tokens=False)
    token_lists = [e.ids for e in encodings]
    token_lists.append([eos_id])  # EOS: one more segment, after each document
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    starts = np.cumsum(lengths) - lengths
    tokens = np.fromiter(chain.from_iterable(token_lists), dtype=dtype, count=int(lengths.sum()))
    streams = {}
    for split, doc_segments in segments.items():
        n = sum(map(len, doc_segments))
        order = np.fromiter(map(unique.__getitem__, chain.from_iterable(doc_segments)), dtype=np.int64, count=n)
        doc_ends = np.cumsum(np.fromiter(map(len, doc_segments), dtype=np.int64, count=len(doc_segments)))
        order = np.insert(order, doc_ends, len(token_lists) - 1)  # segment indices, EOS after each document
        seg_lengths = lengths[order]
        ends = np.cumsum(seg_lengths)
        shift = np.repeat(starts[order] - (ends - seg_lengths), seg_lengths)
        streams[split] = tokens[np.arange(len(shift)) + shift]
    return streams


def _encode(backend, split_docs: dict[str, list[str]], eos_id: int, dtype) -> dict[str, np.ndarray]:
    """Each split's documents encoded (no special tokens) and joined with EOS after each, as one array."""
    if _segmentable(backend, [doc for docs in split_docs.values() for doc in docs]):
        return _encode_segmented(backend, split_docs, eos_id, dtype)
    return {
        split: _stream([e.ids for e in backend.encode_batch_fast(docs, add_special_tokens=False)], eos_id, dtype)
        for split, docs in split_docs.items()
    }


@contextmanager
def _gc_paused():
    """Cyclic GC off while rows, documents and token lists pile up: they hold no cycles, and every full
    collection would walk them and the whole heap (transformers, torch) again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.uint32
    with _gc_paused():
        docs = render_documents(load_rows(dataset_dir), render)
        if not docs:
            raise ValueError(f"dataset {dataset_dir}: every document rendered empty ({render.format} format)")
        order = list(range(len(docs)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, round(len(docs) * eval_fraction))
        split_docs = {"eval": [docs[i] for i in order[:n_eval]], "train": [docs[i] for i in order[n_eval:]]}
        del docs
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        streams = _encode(tokenizer.backend_tokenizer, split_docs, tokenizer.eos_token_id, dtype)
    stats = {}
    for split in SPLITS:
        blocks, dropped = _blocks(streams[split], seq_len)
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
    hint = rebuild_hint(cache_dir, REBUILD_RULE)
    try:
        blocks = np.load(cache_dir / f"{split}.npy", mmap_mode="r")
    except (OSError, ValueError) as e:  # a truncated file: numpy's "mmap length is greater than file size"
        raise CorruptResource(f"token cache file {cache_dir}/{split}.npy cannot be opened ({e}); {hint}") from e
    expected = (manifest["splits"][split]["blocks"], manifest["seq_len"])
    if blocks.shape != expected or blocks.dtype.name != manifest["dtype"]:
        raise ValueError(
            f"token cache {cache_dir}/{split}.npy is {blocks.shape} {blocks.dtype}, manifest says "
            f"{expected} {manifest['dtype']}; {hint}"
        )
    return blocks
