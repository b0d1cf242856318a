"""What a sweep asks of the cluster, before anything is submitted: cells, nodes, GPUs, GPU-hours and the
memory each rank is predicted to need."""

from __future__ import annotations

from pathlib import Path

from ftbench.cell import Cell
from ftbench.launch.slurm import geometry, runtime_min
from ftbench.plan.estimate import MemoryEstimate
from ftbench.record import METRICS_FILE


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
    run_dir: str | Path,
    repeats: int = 1,
    model_timeouts: dict[str, int] | None = None,
    estimates: dict[str, MemoryEstimate | None] | None = None,
    capacity_gb: float | None = None,
) -> str:
    """A markdown table of the selected cells (done ones cost nothing) and the totals at the time limits;
    with repeats each cell is that many jobs. A model's own `cell_timeout_s` (`model_timeouts`) wins. Each
    cell's memory estimate per rank (`estimates`) is held against the device's `capacity_gb` where known."""
    model_timeouts, estimates = model_timeouts or {}, estimates or {}
    lines = [
        "| cell | nodes x GPUs | time limit (h) | GPU-hours at limit | memory/rank (GB, estimate) | state |",
        "|---|---|---|---|---|---|",
    ]
    todo_gpu_h, todo, peak_nodes = 0.0, 0, 0
    for cell in selected:
        shape = geometry(cell.gpus, hardware["gpus_per_node"])
        done = (Path(run_dir) / "runs" / cell.id / METRICS_FILE).exists()
        limit_h = runtime_min(model_timeouts.get(cell.model, timeout_s)) / 60
        gpu_h = cell.gpus * limit_h * repeats
        if not done:
            todo, todo_gpu_h, peak_nodes = todo + 1, todo_gpu_h + gpu_h, max(peak_nodes, shape.nodes)
        lines.append(
            f"| {cell.id} | {shape.nodes} x {shape.gpus_per_node} | {limit_h:.2f} | {gpu_h:.2f} | "
            f"{memory_text(estimates.get(cell.id), capacity_gb)} | "
            f"{'done' if done else 'to run'} |"
        )
    lines += [
        "",
        f"{todo} of {len(selected)} selected cells to run ({len(pruned)} pruned), largest job {peak_nodes} "
        f"node(s); at most {todo_gpu_h:.1f} GPU-hours{f' ({repeats} repeats each)' if repeats > 1 else ''} "
        f"(every cell at its limit: limits.cell_timeout_s={timeout_s} s or its model's cell_timeout_s, "
        "+ start-up slack).",
    ]
    return "\n".join(lines) + "\n"
