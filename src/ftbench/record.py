"""What a cell's run leaves on disk, for every stage that writes or reads it: the status values, the result
files' names, and the fields every record starts with."""

from __future__ import annotations

import hashlib
import json

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


def header(cell: Cell, spec: dict) -> dict:
    """The fields every record of a cell starts with, whatever its status: the cell, and which job spec it
    measured (`spec_hash`; the record's `config` is the spec itself)."""
    return {
        "cell_id": cell.id,
        "run_name": spec["run_name"],
        **cell.all_fields(),
        "zero_stage": cell.zero_stage,
        "spec_hash": spec_hash(spec),
    }


def spec_hash(spec: dict) -> str:
    """A job spec's hash, in one canonical form (keys sorted, no whitespace): equal specs, equal hashes."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _leaves(value, path: str = "") -> dict:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{path}.{key}" if path else key).items()}
    return {path: value}


SPEC_UNKNOWN = "spec unknown"


def spec_changes(recorded: dict | None, current: dict, most: int = 3) -> str | None:
    """What a result measured that the current spec would not: each differing key as `steps.measure 30 → 7`
    (the first `most`, then how many more); None when they agree; `SPEC_UNKNOWN` for a record without its
    spec."""
    if not isinstance(recorded, dict):
        return SPEC_UNKNOWN
    if spec_hash(recorded) == spec_hash(current):
        return None
    old, new = _leaves(recorded), _leaves(current)
    missing = object()
    changed = [
        f"{key} {_text(old.get(key, missing), missing)} → {_text(new.get(key, missing), missing)}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key, missing) != new.get(key, missing)
    ]
    more = f" and {len(changed) - most} more" if len(changed) > most else ""
    return ", ".join(changed[:most]) + more


def _text(value, missing) -> str:
    return "unset" if value is missing else json.dumps(value)
