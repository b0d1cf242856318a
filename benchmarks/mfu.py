"""Hardware efficiency of one training cell: achieved FLOP/s / the machine's measured matmul ceiling.

Runs a ~30M-parameter Llama-style cell at world size 1 through the real workflow code (builtin sources,
token cache, `torchrun -m ftbench.train.job`, `ftbench.train.calibrate`), fp32 and bf16, and prints MFU against
the ceiling measured on the same machine with the same threads.

    python benchmarks/mfu.py            # full: ~30M model, exits 1 if fp32 < 0.85 or bf16 < 0.70
    python benchmarks/mfu.py --quick    # tiny model, proves the script works (CI), no gate
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from harness import bench_spec, prepare_model, prepare_sources, run_cell

from ftbench.cell import Cell
from ftbench.train import calibrate

TARGETS = {"fp32": 0.85, "bf16": 0.70}
FULL = {
    "rows": 4000,
    "vocab": 8192,
    "seq": 256,
    "bs": 8,
    "warmup": 2,
    "measure": 8,
    "size": 4096,
    "reps": 10,
    "arch": {"hidden_size": 512, "num_layers": 8, "num_heads": 8, "intermediate_size": 1376, "max_positions": 512},
}
QUICK = {
    "rows": 300,
    "vocab": 512,
    "seq": 64,
    "bs": 4,
    "warmup": 1,
    "measure": 2,
    "size": 256,
    "reps": 3,
    "arch": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128, "max_positions": 128},
}


def train(work: Path, model: Path, cache: Path, precision: str, threads: int, p: dict) -> dict:
    cell = Cell("bench", "ddp", 1, "full", precision, p["bs"], p["seq"], p["bs"])
    spec = bench_spec(cell, p["warmup"], p["measure"], device="auto", threads=threads)
    return run_cell(work, spec, model, cache, precision, threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, no gate (CI)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the rank and of calibration")
    args = parser.parse_args()
    p = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="ftbench-mfu-") as tmp:
        work = Path(tmp)
        _, cache = prepare_sources(work, p["rows"], p["vocab"], p["seq"], eval_fraction=0.05)
        model = prepare_model(work, "bench", p["arch"])
        ceiling = calibrate.calibrate("auto", args.threads, work / "calibration.json", p["size"], p["reps"])
        print(f"device: {ceiling['device_model']} ({ceiling['device']}), {args.threads} thread(s)")
        print(
            "| precision | params | FLOPs/token | tokens/s | achieved GFLOP/s | matmul ceiling GFLOP/s | MFU | target |"
        )
        print("|---|---|---|---|---|---|---|---|")
        missed = []
        for precision, target in TARGETS.items():
            m = train(work, model, cache, precision, args.threads, p)
            top = ceiling["matmul"][precision]["flops_per_s"]
            mfu = m["achieved_flops_per_s_per_gpu"] / top
            print(
                f"| {precision} | {m['params_total'] / 1e6:.1f}M | {m['flops_per_token'] / 1e6:.1f}M | "
                f"{m['train_tokens_per_s']:.0f} | {m['achieved_flops_per_s_per_gpu'] / 1e9:.1f} | {top / 1e9:.1f} | "
                f"{mfu:.3f} | {'-' if args.quick else f'>= {target}'} |"
            )
            if mfu < target:
                missed.append(f"{precision} {mfu:.3f} < {target}")
    if missed and not args.quick:
        print("target missed: " + ", ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
