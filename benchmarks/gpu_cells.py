"""Real GPU cells: every single-GPU strategy on one ~0.85B-parameter Llama-style model, bf16, through the
same launcher, aggregation and table code as a workflow run (for a machine with one CUDA GPU).

Prints the matmul ceiling measured on the GPU, then the README table of the cells (MFU against that
ceiling and against the datasheet), and writes summary.csv and every metrics.json under --out.

    python benchmarks/gpu_cells.py --out DIR            # ~0.85B model, ddp fsdp zero1 zero2 zero3
    python benchmarks/gpu_cells.py --out DIR --quick    # tiny model, ddp only (a smoke test on CUDA)
    python benchmarks/gpu_cells.py --out DIR --strategies ddp fsdp --compile   # with options.<strategy>.compile
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import bench_spec, prepare_model, prepare_sources, run_cell

from ftbench.cell import Cell
from ftbench.report import aggregate, tables
from ftbench.train import calibrate

STRATEGIES = ["ddp", "fsdp", "zero1", "zero2", "zero3"]
FULL = {
    "rows": 20000,
    "vocab": 8192,
    "seq": 1024,
    "bs": 8,
    "warmup": 5,
    "measure": 20,
    "lr": 1e-4,  # a fine-tuning rate: with no warm-up, 3e-4 and 1e-3 sent ddp/fsdp to NaN by step 5
    "arch": {
        "hidden_size": 2048,
        "num_layers": 16,
        "num_heads": 16,
        "intermediate_size": 5632,
        "max_positions": 2048,
    },
}
QUICK = {
    "rows": 1000,
    "vocab": 1024,
    "seq": 128,
    "bs": 4,
    "warmup": 1,
    "measure": 2,
    "lr": 1e-3,
    "arch": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128, "max_positions": 256},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where summary.csv and the metrics go")
    parser.add_argument("--quick", action="store_true", help="tiny model, ddp only")
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES)
    parser.add_argument("--device", default="auto", help="auto: the GPU when there is one (--quick also runs on CPU)")
    parser.add_argument("--precisions", nargs="+", default=["bf16"], choices=["bf16", "fp32"])
    parser.add_argument("--compile", action="store_true", help="cells run with options.<strategy>.compile (ddp, fsdp)")
    args = parser.parse_args()
    if args.compile and not set(args.strategies) <= {"ddp", "fsdp"}:
        parser.error("--compile: only ddp and fsdp take options.<strategy>.compile")
    p = QUICK if args.quick else FULL
    strategies = ["ddp"] if args.quick else args.strategies
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ftbench-gpu-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        _, cache = prepare_sources(work, p["rows"], p["vocab"], p["seq"], eval_fraction=0.02)
        model = prepare_model(work, "llama-gpu", p["arch"])
        print(f"sources prepared in {time.perf_counter() - t0:.1f} s", flush=True)
        ceiling = calibrate.calibrate(args.device, 1, args.out / "calibration.json", 8192 if not args.quick else 1024)
        for name, m in ceiling["matmul"].items():
            print(f"{ceiling['device_model']}: {name} matmul ceiling {m['flops_per_s'] / 1e12:.1f} TFLOP/s", flush=True)
        records, files = [], []
        for precision in args.precisions:
            for strategy in strategies:
                cell = Cell("llama-gpu", strategy, 1, "full", precision, p["bs"], p["seq"], p["bs"])
                options = {strategy: {"compile": True}} if args.compile else {}
                spec = bench_spec(
                    cell, p["warmup"], p["measure"], device=args.device, gen=(32, 64), lr=p["lr"], options=options
                )
                tag = f"{strategy}-{precision}{'-compiled' if args.compile else ''}"
                m = run_cell(work, spec, model, cache, tag)
                phases = ", ".join(f"{k} {v:.1f}" for k, v in m["startup_phases_s"].items())
                print(f"{tag}: {m['train_tokens_per_s']:,.0f} tok/s, {m['startup_s']:.1f} s to first step ({phases})")
                dest = args.out / "runs" / tag / "metrics.json"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(work / "runs" / tag / "metrics.json", dest)
                records.append(cell.to_dict())
                files.append(dest)
        summary = aggregate.collect(records, files, calibration=args.out / "calibration.json")
        summary.write_csv(args.out / "summary.csv")
        print(tables.render(summary))
        print(json.dumps({"params_total": json.loads(files[0].read_text())["params_total"]}))


if __name__ == "__main__":
    sys.exit(main())
