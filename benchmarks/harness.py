"""What every benchmark shares: the sources it trains on and how it runs one cell.

Everything goes through the code a workflow cell runs: builtin sources prepared by `ftbench.data.sources`, the
packed cache by `ftbench.data.tokcache`, the job spec by `ftbench.plan.matrix.job_spec`, and the cell itself by
`python -m ftbench.launch` (the train rule's launcher: torchrun, limits, failure records).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ftbench.cell import Cell
from ftbench.data import sources, tokcache
from ftbench.plan.matrix import job_spec

TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n{response}"


def bench_spec(
    cell: Cell,
    warmup: int,
    measure: int,
    device: str = "cpu",
    threads: int = 1,
    gen=(8, 4),
    lr: float = 1e-3,
    options: dict | None = None,
) -> dict:
    config = {
        "run_name": "bench",
        "seed": 0,
        "steps": {"warmup": warmup, "measure": measure, "eval": 1},
        "optimizer": {"lr": lr, "weight_decay": 0.0, "max_grad_norm": 1.0},
        "generation": {"prompt_tokens": gen[0], "new_tokens": gen[1]},
        "options": options or {},
        "hardware": {"device": device, "cpu_threads_per_rank": threads},
    }
    return job_spec(config, cell)


def prepare_sources(work: Path, rows: int, vocab: int, seq: int, eval_fraction: float = 0.1) -> tuple[Path, Path]:
    """Builtin dataset, BPE tokenizer and packed token cache under `work`; returns (tokenizer, cache)."""
    sources.prepare_dataset("builtin:customer_support", work / "data", rows, seed=0)
    sources.train_tokenizer(f"builtin:bpe-{vocab}", work / "data", TEMPLATE, work / "tok")
    tokcache.build(work / "data", work / "tok", work / "cache", TEMPLATE, seq, eval_fraction, seed=0)
    return work / "tok", work / "cache"


def prepare_model(work: Path, name: str, architecture: dict) -> Path:
    """A Llama-style model of `architecture`, randomly initialised (seed 0), saved under work/<name>."""
    spec = {"name": name, "source": "config:llama", "architecture": architecture}
    sources.prepare_model(spec, work / "tok", work / name, seed=0)
    return work / name


def run_cell(work: Path, spec: dict, model: Path, cache: Path, tag: str, threads: int = 1) -> dict:
    """Run one cell through `python -m ftbench.launch` (what the train rule runs) and return its metrics.json."""
    out = work / "runs" / tag / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".log")
    cmd = [
        sys.executable,
        "-m",
        "ftbench.launch",
        "--gpus",
        str(spec["cell"]["gpus"]),
        "--log",
        str(log),
        "--",
    ]
    cmd += ["--spec", json.dumps(spec), "--model", str(model), "--cache", str(cache), "--out", str(out)]
    # DeepSpeed's ops build once per directory: a TORCH_EXTENSIONS_DIR already set (.ci/run's) is reused
    extensions = os.environ.get("TORCH_EXTENSIONS_DIR", str(work / "torch_extensions"))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TORCH_EXTENSIONS_DIR": extensions}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode or not out.exists():
        sys.exit(f"{tag}: ftbench.launch exit {proc.returncode}\n{log.read_text()[-3000:] if log.exists() else ''}")
    metrics = json.loads(out.read_text())
    if metrics["status"] != "ok":
        sys.exit(f"{tag}: {metrics['status']} ({metrics.get('note') or metrics.get('error')}); log: {log}")
    return metrics
