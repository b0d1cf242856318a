"""What each rule's job asks of the scheduler, as plain values: the Slurm resources, threads and time limits
of a training cell, of calibration and of the jobs that need no GPU. rules/common.smk turns a `ByWildcard`
into the per-job function Snakemake calls; everything else is given as it is.

Snakemake evaluates a function resource once per job (a 1,000-cell matrix: 1,000 calls per resource), so a
value that is the same for every cell is given as that value, and one that depends on the GPU count or the
model alone is computed once per GPU count or model here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftbench.cell import Cell
from ftbench.launch.slurm import job_resources, mem_mb, runtime_min
from ftbench.plan.config import cell_timeout_s
from ftbench.plan.host_memory import cell_request_gb
from ftbench.plan.model_shape import Shape

CALIBRATION_TIMEOUT_S = 600
PER_CELL = "per cell"
"""`mem_mb` of a training cell without `hardware.host_memory_per_rank_gb`: estimated per cell
(`cell_mem_mb`), once its model's shape is known."""


@dataclass(frozen=True)
class ByWildcard:
    """A value that depends on one wildcard of the job (`gpus` or `model`): {wildcard value: value}."""

    wildcard: str
    values: dict[str, object]

    def of(self, wildcards) -> object:
        return self.values[wildcards[self.wildcard]]


def vary(wildcard: str, values: dict) -> object:
    """One value when every key has the same (Snakemake then evaluates nothing per job), else a `ByWildcard`
    keyed by the wildcard's text."""
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return ByWildcard(wildcard, {str(key): value for key, value in values.items()})


def declared(resources: dict) -> dict:
    """Resources without the unset ones (None): Snakemake evaluates every declared resource of every job."""
    return {name: value for name, value in resources.items() if value is not None}


def cpu_partition(config: dict, on_device: bool = False) -> dict:
    """`hardware.cpu_partition` as the Slurm partition of a job that needs no GPU (for a job that runs on the
    cells' device, `on_device`, only when that device is the CPU); nothing when unset."""
    partition = config["hardware"].get("cpu_partition")
    needs_no_gpu = not on_device or config["hardware"]["device"] == "cpu"
    return {"slurm_partition": partition} if partition and needs_no_gpu else {}


def model_timeouts(config: dict) -> dict[str, int]:
    """Each model's cell wall-time limit (its own `cell_timeout_s`, else `limits.cell_timeout_s`)."""
    return {model["name"]: cell_timeout_s(config, model["name"]) for model in config["models"]}


def train_cell(config: dict, cells: list[Cell]) -> dict:
    """A training cell's job: Slurm's nodes, GPUs, CPUs and memory from its GPU count (ftbench.launch.slurm),
    its time limit and the launcher's from its model, the local profile's `train_jobs` and the per-rank CPU
    memory limit. `mem_mb` is `PER_CELL` unless hardware.host_memory_per_rank_gb fixes it."""
    hardware = config["hardware"]
    gpu_counts = sorted({cell.gpus for cell in cells})
    timeouts = model_timeouts(config)
    at = {gpus: job_resources(hardware, gpus, runtime_min(config["limits"]["cell_timeout_s"])) for gpus in gpu_counts}
    resources = declared({name: vary("gpus", {g: at[g][name] for g in gpu_counts}) for name in at[gpu_counts[0]]})
    resources.update(cpu_partition(config, on_device=True))
    if "runtime" in resources:  # Slurm's -t follows the cell's own limit
        resources["runtime"] = vary("model", {name: runtime_min(t) for name, t in timeouts.items()})
    resources.setdefault("mem_mb", PER_CELL)
    return {
        **resources,
        # the local profile caps this at 1 so timings are never measured on a shared CPU
        "train_jobs": 1,
        "cell_timeout_s": vary("model", timeouts),
        "cpu_mem_per_rank_mb": int(config["limits"]["cpu_memory_per_rank_gb"] * 1024),
    }


def train_threads(config: dict, cells: list[Cell]) -> object:
    """A training cell's threads: one rank per GPU, each with hardware.cpu_threads_per_rank."""
    per_rank = config["hardware"]["cpu_threads_per_rank"]
    return vary("gpus", {gpus: gpus * per_rank for gpus in sorted({cell.gpus for cell in cells})})


def cell_mem_mb(config: dict, cell: Cell, shape: Shape | None) -> int | None:
    """What the cell's strategy holds on the host (ftbench.plan.host_memory), from its model's shape; None
    while the shape is not known (a dry run before the download)."""
    per_rank = cell_request_gb(config, cell, shape)
    return None if per_rank is None else mem_mb(config["hardware"], cell.gpus, per_rank)


def calibration(config: dict) -> dict:
    """The calibration job: one GPU of the kind the cells run on."""
    return declared(
        {
            **job_resources(config["hardware"], 1, runtime_min(CALIBRATION_TIMEOUT_S)),
            **cpu_partition(config, on_device=True),
        }
    )
