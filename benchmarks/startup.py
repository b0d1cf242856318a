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
import tempfile
from pathlib import Path

from harness import bench_spec, prepare_model, prepare_sources, run_cell

from ftbench.cell import Cell
from ftbench.train.metrics import STARTUP_PHASES

ARCH = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128, "max_positions": 128}
STRATEGIES = ["ddp", "fsdp", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload", "pipeline"]


def launch(work: Path, strategy: str, attempt: int) -> dict:
    cell = Cell("tiny", strategy, 2, "full", "fp32", 2, 64, 4)
    spec = bench_spec(cell, warmup=1, measure=1, gen=(4, 2))
    return run_cell(work, spec, work / "tiny", work / "cache", f"{strategy}-{attempt}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ddp once (CI)")
    args = parser.parse_args()
    strategies, attempts = (["ddp"], 1) if args.quick else (STRATEGIES, 2)
    with tempfile.TemporaryDirectory(prefix="ftbench-startup-") as tmp:
        work = Path(tmp)
        prepare_sources(work, 400, 512, 64)
        prepare_model(work, "tiny", ARCH)
        print("| strategy | run | startup (s) | " + " | ".join(STARTUP_PHASES) + " |")
        print("|---|---|---|" + "---|" * len(STARTUP_PHASES))
        for attempt in range(1, attempts + 1):
            for strategy in strategies:
                m = launch(work, strategy, attempt)
                phases = " | ".join(f"{m['startup_phases_s'][p]:.2f}" for p in STARTUP_PHASES)
                print(f"| {strategy} | {attempt} | {m['startup_s']:.2f} | {phases} |", flush=True)


if __name__ == "__main__":
    main()
