"""Token cache (issue P3): building ftbench's packed cache vs the run_clm path of `datasets`, on the same
corpus and tokenizer, and the cost of a cache hit.

- ours: `ftbench.data.tokcache.build` end to end (read rows, render the template, batch-encode, pack with EOS,
  write the memmaps and the manifest);
- peer: what `transformers/examples/pytorch/language-modeling/run_clm.py` does: `Dataset.map(tokenize,
  batched=True)` then `Dataset.map(group_texts, batched=True)`, default batch size, caching off, given the
  already rendered documents (rendering is not counted against it);
- hit: what a second cell with the same tokenizer pays: opening the cache (manifest + memmaps).

The builtin corpus repeats many lines (template lines, boilerplate answers), which ftbench encodes once
each; the same comparison on a copy where every content line is made unique shows the gain without that.

Target: ours >= 3x faster than the peer on the builtin corpus, a hit < 0.5 s.

    python benchmarks/token_cache.py            # 40,000 rows, exits 1 when a target is missed
    python benchmarks/token_cache.py --quick    # 400 rows, proves the script works (CI), no gate
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from itertools import chain
from pathlib import Path

from harness import TEMPLATE

from ftbench.data import sources, tokcache
from ftbench.files import read_json

SEQ = 512


def run_clm(docs: list[str], tokenizer_dir: Path, seq_len: int) -> int:
    """The peer, as run_clm.py runs it for speed (no cache files, default batch size); returns blocks."""
    import datasets
    from transformers import AutoTokenizer

    datasets.disable_caching()
    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    raw = datasets.Dataset.from_dict({"text": docs})

    def tokenize_function(examples):
        return tokenizer(examples["text"])

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total_length = (len(concatenated["input_ids"]) // seq_len) * seq_len
        result = {k: [t[i : i + seq_len] for i in range(0, total_length, seq_len)] for k, t in concatenated.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    tokenized = raw.map(tokenize_function, batched=True, remove_columns=["text"])
    return len(tokenized.map(group_texts, batched=True))


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def unique_copy(data: Path, out: Path) -> Path:
    """The dataset with every line of every field made unique (a row and line number appended)."""
    shutil.copytree(data, out)
    path = out / sources.DATA_FILE
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for i, row in enumerate(rows):
        for key, value in row.items():
            if isinstance(value, str):
                row[key] = "\n".join(f"{line} [{i}.{j}]" for j, line in enumerate(value.split("\n")))
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")
    return out


def compare(work: Path, data: Path, repeats: int) -> dict:
    """Median seconds of ours and the peer on one dataset, blocks of each, and tokens of ours."""
    docs = sources.render_documents(sources.load_rows(data), TEMPLATE)
    ours, peer = [], []
    for r in range(repeats):
        cache = work / f"cache-{data.name}-{r}"
        t, _ = timed(lambda cache=cache: tokcache.build(data, work / "tok", cache, TEMPLATE, SEQ, 0.05, 0))
        ours.append(t)
        t, blocks = timed(lambda: run_clm(docs, work / "tok", SEQ))
        peer.append(t)
    tokens = sum(read_json(work / f"cache-{data.name}-0" / "manifest.json")["tokens"].values())
    return {"ours": statistics.median(ours), "peer": statistics.median(peer), "blocks": blocks, "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small corpus, no gate (CI)")
    args = parser.parse_args()
    rows, repeats = (400, 1) if args.quick else (40_000, 3)
    with tempfile.TemporaryDirectory(prefix="ftbench-tokcache-") as tmp:
        work = Path(tmp)
        sources.prepare_dataset("builtin:customer_support", work / "data", rows, seed=0)
        sources.train_tokenizer("builtin:bpe-8192", work / "data", TEMPLATE, work / "tok")
        # both sides start with their libraries imported and a tokenizer loaded once (lazy imports)
        import datasets  # noqa: F401
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(work / "tok")
        results = {
            "builtin corpus": compare(work, work / "data", repeats),
            "every content line unique": compare(work, unique_copy(work / "data", work / "unique"), repeats),
        }
        hit, _ = timed(lambda: [tokcache.open_split(work / "cache-data-0", s) for s in tokcache.SPLITS])
    print(f"{rows} rows, bpe-8192, {SEQ}-token blocks, median of {repeats}")
    print("| corpus | tokens | ftbench.data.tokcache.build (s) | datasets.map + group_texts (s) | speed-up | target |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        target = ">= 3x" if name == "builtin corpus" else "-"
        speedup = r["peer"] / r["ours"]
        print(f"| {name} | {r['tokens']:,} | {r['ours']:.2f} | {r['peer']:.2f} | {speedup:.1f}x | {target} |")
    print(f"cache hit (open manifest + memmaps): {hit:.4f} s (target < 0.5)")
    builtin = results["builtin corpus"]
    missed = [m for m, bad in (("speed-up", builtin["peer"] / builtin["ours"] < 3), ("cache hit", hit >= 0.5)) if bad]
    if missed and not args.quick:
        sys.exit(f"target missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
