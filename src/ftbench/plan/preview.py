"""What a sweep asks of the cluster, before anything is submitted: cells, nodes, GPUs, GPU-hours and the
memory each rank is predicted to need; and which cells will run and why, as Snakemake itself decides it
(`snakemake --summary`: each output's status and whether it is updated)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import yaml

from ftbench.cell import Cell
from ftbench.launch.slurm import geometry, runtime_min
from ftbench.plan.estimate import MemoryEstimate
from ftbench.record import METRICS_FILE

DONE = "done"
STATES = ("new", "failed", "params changed", "input changed", "code changed", DONE)
"""A selected cell's state, the most telling first: a cell with several repeats takes its first."""
STATUS_STATES = {
    "params changed": "params changed",
    "set of input files changed": "input changed",
    "updated input files": "input changed",
    "rule implementation changed": "code changed",
}
"""`snakemake --summary`'s status of an existing output, as a state."""


def ask_snakemake(
    python: str, snakefile: str, config: dict, targets: list[str], options: list[str], workdir: str | Path = "."
) -> str:
    """`snakemake --summary` of `targets` (the selected cells' results) under exactly `config` (the invoking
    run's, with its --configfile and --config already merged in) and the invoking run's `options` (its
    deployment methods and rerun triggers, which decide what re-runs), run by `python` (the driver's
    interpreter: a rule's conda env need not hold snakemake): one tab-separated row per output."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(config, f)
    try:
        # the targets first, --configfile last: it and the options take every word after them
        cmd = [python, "-m", "snakemake", *targets, "--summary", "--nolock", "-s", snakefile, *options]
        run = subprocess.run([*cmd, "--configfile", f.name], cwd=workdir, capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if run.returncode != 0:
        raise RuntimeError(f"snakemake --summary failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return run.stdout


def invocation_options(deployment_methods, rerun_triggers) -> list[str]:
    """The command-line options that make a second snakemake decide re-runs as this one does: its software
    deployment methods (`--sdm conda` records each env's hash) and its rerun triggers."""
    sdm = sorted(m.item_to_choice() for m in deployment_methods)
    triggers = sorted(t.item_to_choice() for t in rerun_triggers)
    return [*(["--sdm", *sdm] if sdm else []), "--rerun-triggers", *triggers]


def cell_states(summary: str, run_dir: str | Path, logs_dir: str | Path) -> dict[str, str]:
    """{cell id: state} of the training cells in a `snakemake --summary` table: new (never ran), failed (its
    job's log is there but no result), params / input / code changed (Snakemake re-runs it: an input changed
    also when a build it reads is re-made), done."""
    runs = f"{Path(run_dir).as_posix()}/runs/"
    states: dict[str, str] = {}
    for line in summary.splitlines():
        fields = line.split("\t")
        if len(fields) != 6 or fields[2] != "train_cell" or not fields[0].startswith(runs):
            continue
        output, _, _, _, status, plan = fields
        job = output.removeprefix(runs).removesuffix(f"/{METRICS_FILE}")
        cell_id = re.sub(r"/repeat-\d+$", "", job)
        if status == "missing":
            state = "failed" if (Path(logs_dir) / f"{job}.log").exists() else "new"
        elif status in STATUS_STATES:
            state = STATUS_STATES[status]
        else:
            state = DONE if plan == "no update" else "input changed"
        known = states.get(cell_id, DONE)
        states[cell_id] = min(known, state, key=STATES.index)
    return states


def memory_text(predicted: MemoryEstimate | None, capacity_gb: float | None) -> str:
    """`12.3`, `95.1 (over 80)` past the device's memory, or why there is no estimate."""
    if predicted is None:
        return "unknown until downloaded"
    over = f" (over {capacity_gb:g})" if capacity_gb is not None and predicted.gb > capacity_gb else ""
    return f"{predicted.gb:.2f}{over}"


def render(
    selected: list[Cell],
    pruned: list[tuple[Cell, str]],
    hardware: dict,
    timeout_s: int,
    states: dict[str, str],
    repeats: int = 1,
    model_timeouts: dict[str, int] | None = None,
    estimates: dict[str, MemoryEstimate | None] | None = None,
    capacity_gb: float | None = None,
) -> str:
    """A markdown table of the selected cells (done ones cost nothing) and the totals at the time limits;
    with repeats each cell is that many jobs. A model's own `cell_timeout_s` (`model_timeouts`) wins. Each
    cell's memory estimate per rank (`estimates`) is held against the device's `capacity_gb` where known.
    `states` (cell_states) says which cells run and why."""
    model_timeouts, estimates = model_timeouts or {}, estimates or {}
    lines = [
        "| cell | nodes x GPUs | time limit (h) | GPU-hours at limit | memory/rank (GB, estimate) | state |",
        "|---|---|---|---|---|---|",
    ]
    todo_gpu_h, todo, peak_nodes, reasons = 0.0, 0, 0, {}
    for cell in selected:
        shape = geometry(cell.gpus, hardware["gpus_per_node"])
        state = states.get(cell.id, "new")
        done = state == DONE
        limit_h = runtime_min(model_timeouts.get(cell.model, timeout_s)) / 60
        gpu_h = cell.gpus * limit_h * repeats
        if not done:
            todo, todo_gpu_h, peak_nodes = todo + 1, todo_gpu_h + gpu_h, max(peak_nodes, shape.nodes)
        lines.append(
            f"| {cell.id} | {shape.nodes} x {shape.gpus_per_node} | {limit_h:.2f} | {gpu_h:.2f} | "
            f"{memory_text(estimates.get(cell.id), capacity_gb)} | "
            f"{state} |"
        )
        reasons[state] = reasons.get(state, 0) + 1
    lines += [
        "",
        f"{todo} of {len(selected)} selected cells to run ({len(pruned)} pruned), largest job {peak_nodes} "
        f"node(s); at most {todo_gpu_h:.1f} GPU-hours{f' ({repeats} repeats each)' if repeats > 1 else ''} "
        f"(every cell at its limit: limits.cell_timeout_s={timeout_s} s or its model's cell_timeout_s, "
        "+ start-up slack).",
        "By state: " + ", ".join(f"{s} {reasons[s]}" for s in STATES if s in reasons) + ".",
    ]
    return "\n".join(lines) + "\n"
