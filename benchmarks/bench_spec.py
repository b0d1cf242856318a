"""The job spec the benchmarks hand to `ftbench.train_cell`: built by `ftbench.matrix.job_spec` (what the
train rule uses) from a minimal config, so the benchmarks run exactly what a workflow cell runs."""

from __future__ import annotations

from ftbench.config import Cell
from ftbench.matrix import job_spec


def bench_spec(cell: Cell, warmup: int, measure: int, device: str = "cpu", threads: int = 1, gen=(8, 4)) -> dict:
    config = {
        "run_name": "bench",
        "seed": 0,
        "steps": {"warmup": warmup, "measure": measure, "eval": 1},
        "optimizer": {"lr": 1e-3, "weight_decay": 0.0, "max_grad_norm": 1.0},
        "generation": {"prompt_tokens": gen[0], "new_tokens": gen[1]},
        "options": {},
        "hardware": {"device": device, "cpu_threads_per_rank": threads},
    }
    return job_spec(config, cell)
