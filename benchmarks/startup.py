"""Fixed cost per cell (issue P5): seconds from the job's launcher starting torchrun to the first training
step, per strategy, split into phases (metrics.json `startup_s`, `startup_phases_s`).

Each strategy runs one tiny cell at world 2 through `python -m ftbench.launch` (what the train rule runs),
twice: the first ZeRO cell may compile DeepSpeed's CPU op into the shared op cache, the second shows what
every later cell pays.

    python benchmarks/startup.py            # every strategy, twice
    python benchmarks/startup.py --quick    # ddp only, once (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_spec import bench_spec

from ftbench import sources, tokcache
from ftbench.config import Cell
from ftbench.metrics import STARTUP_PHASES

TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n{response}"
ARCH = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128, "max_positions": 128}
STRATEGIES = ["ddp", "fsdp", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload", "pipeline"]


def launch(work: Path, strategy: str, attempt: int) -> dict:
    cell = Cell("tiny", strategy, 2, "full", "fp32", 2, 64, 4)
    spec = bench_spec(cell, warmup=1, measure=1, gen=(4, 2))
    out = work / "runs" / f"{strategy}-{attempt}" / "metrics.json"
    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True)
    cmd = [sys.executable, "-m", "ftbench.launch", "--gpus", "2", "--log", str(log), "--"]
    cmd += [
        "--spec",
        json.dumps(spec),
        "--model",
        str(work / "model"),
        "--cache",
        str(work / "cache"),
        "--out",
        str(out),
    ]
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(work / "torch_extensions")}
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, env=env)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ddp once (CI)")
    args = parser.parse_args()
    strategies, attempts = (["ddp"], 1) if args.quick else (STRATEGIES, 2)
    with tempfile.TemporaryDirectory(prefix="ftbench-startup-") as tmp:
        work = Path(tmp)
        sources.prepare_dataset("builtin:customer_support", work / "data", 400, seed=0)
        sources.train_tokenizer("builtin:bpe-512", work / "data", TEMPLATE, work / "tok")
        sources.prepare_model(
            {"name": "tiny", "source": "config:llama", "architecture": ARCH}, work / "tok", work / "model", 0
        )
        tokcache.build(work / "data", work / "tok", work / "cache", TEMPLATE, 64, 0.1, seed=0)
        print("| strategy | run | startup (s) | " + " | ".join(STARTUP_PHASES) + " |")
        print("|---|---|---|" + "---|" * len(STARTUP_PHASES))
        for attempt in range(1, attempts + 1):
            for strategy in strategies:
                m = launch(work, strategy, attempt)
                phases = " | ".join(f"{m['startup_phases_s'][p]:.2f}" for p in STARTUP_PHASES)
                print(f"| {strategy} | {attempt} | {m['startup_s']:.2f} | {phases} |", flush=True)


if __name__ == "__main__":
    main()
