"""What a cell's run leaves on disk, for every stage that writes or reads it: the status values, the result
files' names, and the fields every record starts with."""

from __future__ import annotations

from ftbench.cell import Cell

STATUS_OK = "ok"
STATUS_OOM = "oom"
STATUS_TIMEOUT = "timeout"
STATUS_FAILED = "failed"
STATUS_PENDING = "pending"
STATUS_PRUNED = "pruned"
RESULT_STATUSES = (STATUS_OK, STATUS_OOM, STATUS_TIMEOUT)
"""The statuses a metrics.json records (failed, pruned and pending rows have none)."""

METRICS_FILE = "metrics.json"
FAILURE_FILE = "failure.json"
"""Beside the (absent) metrics.json of a cell that failed: why, from the launcher."""
JOB_FILE = "job.json"
"""Where and when the cell's job ran (the Slurm job id): how a job Slurm killed is traced afterwards."""
EXITS_FILE = "exits-node{node}.json"
"""How each failed rank ended, per node, as torchrun's agent recorded it (ftbench.launch.agent)."""
RANK_OOM_FILE = "oom-rank{rank}.json"
RANK_ERROR_FILE = "error-rank{rank}.json"
"""What a rank saw when it failed: out of memory, or any other error."""


def header(cell: Cell, run_name: str) -> dict:
    """The fields every record of a cell starts with, whatever its status."""
    return {"cell_id": cell.id, "run_name": run_name, **cell.all_fields(), "zero_stage": cell.zero_stage}
