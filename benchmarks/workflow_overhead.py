"""Workflow overhead (issue P4): planning a 1,000-cell matrix, aggregating 10,000 metrics.json, rendering the
README tables.

- `snakemake -n` on a generated 1,000-cell ftbench matrix vs `snakemake -n` on a bare Snakefile with the same
  number of trivial jobs (same Snakemake, same machine): target <= 1.5x;
- `ftbench.report.aggregate.collect` + write over 10,000 metrics.json files: target <= 2 s;
- `ftbench.report.tables.render` of that summary: target <= 1 s.

    python benchmarks/workflow_overhead.py            # full sizes, exits 1 when a target is missed
    python benchmarks/workflow_overhead.py --quick    # small sizes, proves the script works (CI), no gate
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import yaml

from ftbench.cell import Cell
from ftbench.plan.matrix import plan
from ftbench.report import aggregate, tables

REPO = Path(__file__).resolve().parents[1]
BARE_SNAKEFILE = """
N = {n}
rule all:
    input: expand("out/{{i}}/done.txt", i=range(N))
rule job:
    output: "out/{{i}}/done.txt"
    shell: "touch {{output}}"
"""


def matrix_config(models: int) -> dict:
    """models x 5 strategies x 4 GPU counts x 2 methods x 5 seq lens: 200 cells per model, none pruned."""
    config = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    arch = {"hidden_size": 32, "num_layers": 8, "num_heads": 2, "intermediate_size": 64, "max_positions": 1024}
    config["models"] = [
        {"name": f"m{i}", "source": "config:llama", "tokenizer": "builtin:bpe-512", "architecture": arch}
        for i in range(models)
    ]
    config["matrix"] = {
        "strategies": ["ddp", "fsdp", "zero1", "zero2", "zero3"],
        "gpus": [1, 2, 4, 8],
        "method": ["full", "lora"],
        "seq_len": [64, 128, 256, 512, 1024],
    }
    config.pop("global_batch_size", None)
    config["run_name"] = "overhead"
    return config


def dry_run(workdir: Path, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--quiet", "all", *args],
        cwd=workdir,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def planning(work: Path, models: int, repeats: int) -> tuple[int, float, float, float]:
    """Cells, median ftbench and bare times, and the median of their ratios. The two dry runs alternate, so a
    slow spell of a shared machine lands on both sides of a ratio instead of on one side of the comparison."""
    ours = work / "ftbench"
    ours.mkdir()
    config = matrix_config(models)
    (ours / "config.yaml").write_text(yaml.safe_dump(config))
    (ours / "README.md").write_text("# overhead\n")
    cells = len(plan(config).cells)
    bare = work / "bare"
    bare.mkdir()
    (bare / "Snakefile").write_text(BARE_SNAKEFILE.format(n=cells))
    snakefile = ("-s", str(REPO / "Snakefile"), "--configfile", str(ours / "config.yaml"))
    pairs = [(dry_run(ours, *snakefile), dry_run(bare)) for _ in range(repeats)]
    return (
        cells,
        statistics.median(t for t, _ in pairs),
        statistics.median(t for _, t in pairs),
        statistics.median(t_ours / t_bare for t_ours, t_bare in pairs),
    )


def synthetic_metrics(work: Path, n: int) -> tuple[list[dict], list[Path]]:
    """n metrics.json files shaped like a real cell's (every field of the contract, provenance included)."""
    template = {
        "status": "ok",
        "run_name": "overhead",
        "method": "full",
        "precision": "bf16",
        "batch_size_per_gpu": 8,
        "global_batch_size": 64,
        "grad_accum_steps": 1,
        "zero_stage": None,
        "run_duration_s": 120.5,
        "train_time_s": 100.1,
        "train_tokens_per_s": 12345.6,
        "train_samples_per_s": 48.2,
        "step_time_p50_s": 0.52,
        "step_time_p95_s": 0.61,
        "step_times_s": [0.5] * 30,
        "losses": [4.0] * 30,
        "inference_tokens_per_s": 800.0,
        "peak_memory_gb": 21.5,
        "peak_memory_kind": "cuda_max_allocated",
        "train_loss_avg": 3.2,
        "eval_loss": 3.1,
        "eval_perplexity": 22.2,
        "params_total": 7_000_000_000,
        "params_trainable": 7_000_000_000,
        "achieved_flops_per_s_per_gpu": 1.5e14,
        "flops_per_token": 4.2e10,
        "provenance": {
            "git_commit": "0" * 40,
            "start_time": "2026-11-22T00:00:00+00:00",
            "gpu_model": "NVIDIA H100 80GB HBM3",
            "device": "cuda",
            "versions": {"torch": "2.13.0", "transformers": "5.23.0", "deepspeed": "0.19.8"},
        },
    }
    cells, paths = [], []
    for i in range(n):
        model, strategy, gpus, seq = f"m{i // 1000}", ("ddp", "fsdp", "zero3")[i % 3], 2 ** (i % 5), 64 * (i % 10 + 1)
        cell = Cell(model, strategy, gpus, "full", "bf16", 8, seq, 8 * gpus, ("none", "full")[i % 2])
        path = work / "runs" / f"{i}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({**template, "cell_id": cell.id, **cell.all_fields()}))
        cells.append(cell.to_dict())
        paths.append(path)
    return cells, paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, no gate (CI)")
    args = parser.parse_args()
    models, n_metrics, repeats = (1, 300, 1) if args.quick else (5, 10_000, 7)
    with tempfile.TemporaryDirectory(prefix="ftbench-overhead-") as tmp:
        work = Path(tmp)
        cells, t_ours, t_bare, ratio = planning(work, models, repeats)
        records, paths = synthetic_metrics(work, n_metrics)
        start = time.perf_counter()
        frame = aggregate.collect(records, paths)
        aggregate.write(frame, parquet=work / "summary.parquet", csv=work / "summary.csv")
        t_aggregate = time.perf_counter() - start
        frame = pl.read_csv(work / "summary.csv", infer_schema_length=None)
        start = time.perf_counter()
        block = tables.render(frame, charts_rel="docs/overhead/charts")
        t_render = time.perf_counter() - start
    results = [
        (f"snakemake -n, {cells} cells vs {cells} bare jobs", ratio, f"{t_ours:.2f} vs {t_bare:.2f} s", 1.5),
        (f"aggregate {n_metrics} metrics.json", t_aggregate, f"{t_aggregate:.2f} s", 2.0),
        (f"render README tables ({frame.height} rows, {len(block) // 1024} KiB)", t_render, f"{t_render:.3f} s", 1.0),
    ]
    print("| measure | value | target |\n|---|---|---|")
    missed = []
    for name, value, shown, target in results:
        note = f" (ratio {value:.2f})" if name.startswith("snakemake") else ""
        print(f"| {name} | {shown}{note} | <= {target} |")
        if value > target:
            missed.append(name)
    if missed and not args.quick:
        sys.exit(f"target missed: {'; '.join(missed)}")


if __name__ == "__main__":
    main()
