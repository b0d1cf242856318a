"""Per-rank memory of each strategy against model size: the setup peak (building, loading, sharding the
model) and the training-steps peak, each the largest over ranks, from the cells' own metrics.json.

Host figures are VmHWM: resident pages, reset after setup (metrics.MemoryPhases), so the training peak is
not the loading peak. "bound" is what a sharded strategy promises at setup: 1.3 x (the same cell's
process with a tiny model + the fp32 model / world); a pipeline stage's bound counts its own layers.

    python benchmarks/memory.py            # ~120M-parameter Llama, ddp fsdp zero3 pipeline at 1, 2, 4 ranks
    python benchmarks/memory.py --quick    # ~5M parameters, 2 ranks (CI: proves it runs)
    python benchmarks/memory.py --strategies tp fsdp_tp hsdp --worlds 4   # the mesh strategies
    python benchmarks/memory.py --strategies fsdp --worlds 2 --batch 8 --checkpointing none full
                                           # what activation checkpointing saves of the training peak
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from harness import bench_spec, prepare_model, prepare_sources, run_cell

from ftbench.cell import Cell
from ftbench.plan.estimate import estimate
from ftbench.plan.model_shape import Shape
from ftbench.registry import PARAMETERS
from ftbench.registry import STRATEGIES as REGISTRY

STRATEGIES = ["ddp", "fsdp", "zero3", "pipeline"]
SHARDED = {"fsdp", "zero3", "pipeline", "tp", "fsdp_tp", "hsdp"}
TINY = {"hidden_size": 32, "num_layers": 4, "num_heads": 4, "intermediate_size": 64, "max_positions": 128}
FULL = {
    "worlds": [1, 2, 4],
    "arch": {"hidden_size": 768, "num_layers": 16, "num_heads": 12, "intermediate_size": 2048, "max_positions": 128},
}
QUICK = {
    "worlds": [2],
    "arch": {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 688, "max_positions": 128},
}
SEQ, VOCAB = 64, 4096


def parameter_share(shape: Shape, cell: Cell, rank: int) -> float:
    """The fraction of the model rank `rank` of `cell` keeps: its stage, its TP block, its shard."""
    if cell.strategy == "pipeline":
        return shape.stage_params(rank, cell.gpus) / shape.params
    mesh = cell.mesh
    held = shape.tp_params(mesh.tensor_parallel) / shape.params
    return held / mesh.shard if PARAMETERS in REGISTRY[cell.strategy].shards else held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small model at 2 ranks")
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=sorted(REGISTRY))
    parser.add_argument("--method", default="full", choices=["full", "lora"])
    parser.add_argument("--worlds", nargs="+", type=int, help="world sizes (default: 1 2 4; --quick: 2)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=1, help="micro-batch per rank (activations grow with it)")
    parser.add_argument("--checkpointing", nargs="+", default=["none"], choices=["none", "full"])
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    p = QUICK if args.quick else FULL
    rows, missed, estimates = [], [], []
    with tempfile.TemporaryDirectory(prefix="ftbench-memory-") as tmp:
        work = Path(tmp)
        _, cache = prepare_sources(work, 3000, VOCAB, SEQ)
        models = {"tiny": prepare_model(work, "tiny", TINY), "model": prepare_model(work, "model", p["arch"])}
        grid = [(s, w, c) for s in args.strategies for w in args.worlds or p["worlds"] for c in args.checkpointing]
        for strategy, world, checkpointing in grid:
            if strategy == "pipeline" and world == 1:
                continue
            measured, cells = {}, {}
            for name, model in models.items():
                gbs = args.batch * world  # pipeline: one micro-batch per stage, as the plain cells have
                cell = Cell(name, strategy, world, args.method, args.precision, args.batch, SEQ, gbs, checkpointing)
                cells[name] = cell
                t0 = time.perf_counter()
                tag = f"{strategy}-{world}-{checkpointing}-{name}"
                m = run_cell(work, bench_spec(cell, 1, 2, gen=(8, 2)), model, cache, tag)
                measured[name] = (m, time.perf_counter() - t0)
            m, seconds = measured["model"]
            shape = Shape.from_config_json(json.loads((models["model"] / "config.json").read_text()))
            big = cells["model"]
            estimates.append((big, estimate(shape, big, "cpu", {}).gb, m["train_peak_memory_gb"]))
            baseline = measured["tiny"][0]["memory_per_rank"]
            model_gb = m["params_total"] * 4 / 2**30
            for rank, (mine, base) in enumerate(zip(m["memory_per_rank"], baseline, strict=True)):
                share = parameter_share(shape, big, rank)
                bound = 1.3 * (base["setup_host_peak_gb"] + model_gb * share)
                row = {
                    "strategy": strategy,
                    "world": world,
                    "activation_checkpointing": checkpointing,
                    "rank": rank,
                    "params_m": m["params_total"] / 1e6,
                    "model_fp32_gb": model_gb,
                    "baseline_setup_gb": base["setup_host_peak_gb"],
                    "setup_gb": mine["setup_host_peak_gb"],
                    "train_gb": mine["train_host_peak_gb"],
                    "bound_gb": bound,
                    "cell_s": seconds,
                }
                rows.append(row)
                if strategy in SHARDED and row["setup_gb"] > bound:
                    missed.append(f"{strategy} world {world} rank {rank}: {row['setup_gb']:.3f} > {bound:.3f} GB")
    print(
        f"method {args.method}, {args.precision}, seq {SEQ}, micro-batch {args.batch}; "
        "host GB per rank (VmHWM); bound: sharded only"
    )
    print(
        "| strategy | world | act. ckpt | rank | params (M) | model fp32 (GB) | tiny-model setup | setup | train "
        "| bound |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        bound = f"{r['bound_gb']:.3f}" if r["strategy"] in SHARDED else "—"
        print(
            f"| {r['strategy']} | {r['world']} | {r['activation_checkpointing']} | {r['rank']} | {r['params_m']:.1f} | "
            f"{r['model_fp32_gb']:.3f} | "
            f"{r['baseline_setup_gb']:.3f} | {r['setup_gb']:.3f} | {r['train_gb']:.3f} | {bound} |"
        )
    print("\nthe memory estimate (ftbench.plan.estimate) against each cell's training peak (largest rank, GB)")
    print("| strategy | world | act. ckpt | estimate | measured | error |")
    print("|---|---|---|---|---|---|")
    for big, predicted, train_gb in estimates:
        print(
            f"| {big.strategy} | {big.gpus} | {big.activation_checkpointing} | {predicted:.3f} | {train_gb:.3f} | "
            f"{predicted / train_gb - 1:+.1%} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if missed and not args.quick:
        sys.exit("setup peak above the bound:\n" + "\n".join(missed))


if __name__ == "__main__":
    main()
