"""Every cell's metrics.json -> one polars frame per run (summary.parquet / summary.csv).

A cell the plan expects but has no metrics.json is a `pending` row, so a summary always lists the whole
matrix. Lists (per-step times, losses) stay in metrics.json; provenance is flattened into columns.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import polars as pl

from ftbench.cell import AXES, Cell
from ftbench.files import atomic_write_bytes, read_json
from ftbench.launch import slurm
from ftbench.peaks import datasheet_peak
from ftbench.plan.config import SUMMARY_COLUMNS
from ftbench.record import (
    FAILURE_FILE,
    JOB_FILE,
    RESULT_STATUSES,
    STATUS_FAILED,
    STATUS_PENDING,
    STATUS_PRUNED,
    STATUS_TIMEOUT,
    spec_changes,
)

log = logging.getLogger(__name__)


SLURM_STATES = {
    # Slurm ended the job before the launcher could record anything: what the row says
    "TIMEOUT": (STATUS_TIMEOUT, "Slurm TIMEOUT: the job reached its time limit (limits.cell_timeout_s + 10 min)"),
    "OUT_OF_MEMORY": (STATUS_FAILED, "Slurm OUT_OF_MEMORY: host memory; raise hardware.host_memory_per_rank_gb"),
    "NODE_FAIL": (STATUS_FAILED, "Slurm NODE_FAIL: a node of the job failed; the next run retries the cell"),
    "PREEMPTED": (STATUS_FAILED, "Slurm PREEMPTED"),
    "CANCELLED": (STATUS_FAILED, "Slurm CANCELLED"),
    "FAILED": (STATUS_FAILED, "Slurm FAILED: the job ended before the launcher recorded a result"),
}

KEY_COLUMNS = ["cell_id", *(a.field for a in AXES)]
FRONT_COLUMNS = list(SUMMARY_COLUMNS)
SCHEMA_OVERRIDES = {**{a.field: pl.Int64 for a in AXES if a.kind is int}, "zero_stage": pl.Int64, "stale": pl.String}


def flatten(metrics: dict) -> dict:
    """One summary row: scalar fields as they are, provenance spread into columns, lists left out."""
    row = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
    prov = metrics.get("provenance", {})
    row.update({k: v for k, v in prov.items() if not isinstance(v, dict | list)})
    row.update({f"{pkg}_version": v for pkg, v in prov.get("versions", {}).items()})
    for axis in AXES:  # results from before an optional axis existed ran at its default
        if axis.optional:
            row.setdefault(axis.field, axis.default)
    return row


def pending_row(cell: dict, status: str = STATUS_PENDING, cell_type: type[Cell] = Cell) -> dict:
    """A row for a cell (its record, `Cell.to_dict`) without metrics: never ran (pending), failed before
    writing any, or left out of the plan (pruned)."""
    return cell_type.key_row(cell, status)


def read_metrics(path: str | Path) -> tuple[dict | None, str | None]:
    """A cell's metrics.json, or None and why it cannot be aggregated ("metrics.json unreadable: ..."): not
    UTF-8 or JSON (truncated, corrupted), not an object, or without a status a result records."""
    try:
        with open(path, encoding="utf-8") as f:
            metrics = json.load(f)
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None, f"metrics.json unreadable: {path}: {type(e).__name__}: {e}"
    if not isinstance(metrics, dict):
        return None, f"metrics.json unreadable: {path}: a JSON {type(metrics).__name__}, not an object"
    if metrics.get("status") not in RESULT_STATUSES:
        status = metrics.get("status")
        return None, f"metrics.json unreadable: {path}: status {status!r} is not one of {list(RESULT_STATUSES)}"
    return metrics, None


def job_record(cell_dir: Path, name: str) -> Path | None:
    """The cell's own `name` file, else the first of its repeats' (runs/<cell>/repeat-<r>/)."""
    found = [cell_dir / name, *sorted(cell_dir.glob(f"repeat-*/{name}"))]
    return next((p for p in found if p.exists()), None)


def slurm_row(cell: dict, job_file: Path | None) -> dict:
    """A cell without any record of its own: Slurm's word on its last job (sacct), else pending."""
    job_id = read_json(job_file).get("slurm", {}).get("job_id") if job_file and job_file.exists() else None
    state = slurm.job_state(job_id) if job_id else None
    if state not in SLURM_STATES:
        return pending_row(cell)
    status, note = SLURM_STATES[state]
    return {**pending_row(cell, status), "slurm_state": state, "slurm_job_id": job_id, "note": note}


def add_mfu(frame: pl.DataFrame, calibration: dict | None) -> pl.DataFrame:
    """MFU against the measured matmul ceiling of the cell's precision and, on known GPUs, the datasheet; HFU
    (recomputed forwards counted) against the measured ceiling."""
    if "achieved_flops_per_s_per_gpu" not in frame.columns:
        return frame
    if "achieved_hardware_flops_per_s_per_gpu" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.Float64).alias("achieved_hardware_flops_per_s_per_gpu"))
    # results from before activation checkpointing recomputed nothing: their hardware FLOPs are the model's
    frame = frame.with_columns(
        pl.coalesce("achieved_hardware_flops_per_s_per_gpu", "achieved_flops_per_s_per_gpu").alias(
            "achieved_hardware_flops_per_s_per_gpu"
        )
    )
    ceilings = {p: m["flops_per_s"] for p, m in (calibration or {}).get("matmul", {}).items()}
    gpu = frame.get_column("gpu_model") if "gpu_model" in frame.columns else pl.Series([None] * frame.height)
    peaks = [datasheet_peak(g, p) for g, p in zip(gpu, frame.get_column("precision"), strict=True)]
    return frame.with_columns(
        pl.Series(
            "matmul_ceiling_flops_per_s", [ceilings.get(p) for p in frame.get_column("precision")], dtype=pl.Float64
        ),
        pl.Series("datasheet_peak_flops_per_s", [p for p, _ in peaks], dtype=pl.Float64),
        pl.Series("datasheet_source", [s for _, s in peaks], dtype=pl.String),
    ).with_columns(
        (pl.col("achieved_flops_per_s_per_gpu") / pl.col("matmul_ceiling_flops_per_s")).alias("mfu_measured"),
        (pl.col("achieved_flops_per_s_per_gpu") / pl.col("datasheet_peak_flops_per_s")).alias("mfu_datasheet"),
        (pl.col("achieved_hardware_flops_per_s_per_gpu") / pl.col("matmul_ceiling_flops_per_s")).alias("hfu_measured"),
    )


def add_estimates(frame: pl.DataFrame, estimates: dict[str, dict[str, float | None]], device: str) -> pl.DataFrame:
    """`estimated_memory_gb` (ftbench.plan.estimate, per rank on the device the cell ran on, else `device`) and,
    where a training peak was measured, `estimate_error` = estimate / measured - 1."""
    ran_on = frame.get_column("device") if "device" in frame.columns else pl.Series([None] * frame.height)
    predicted = [
        estimates.get(d if d in estimates else device, {}).get(cell_id)
        for cell_id, d in zip(frame.get_column("cell_id"), ran_on, strict=True)
    ]
    frame = frame.with_columns(pl.Series("estimated_memory_gb", predicted, dtype=pl.Float64))
    measured = pl.col("train_peak_memory_gb") if "train_peak_memory_gb" in frame.columns else pl.lit(None)
    return frame.with_columns((pl.col("estimated_memory_gb") / measured - 1).alias("estimate_error"))


def gpu_hour_price(prices: dict[str, float], device: str | None, gpu_model: str | None) -> float | None:
    """The price of a GPU-hour of this cell's device kind: `cpu`, or the first key found in its GPU model's
    name (case-insensitive); None when no key matches."""
    if device == "cpu":
        return prices.get("cpu")
    for kind, price in prices.items():
        if gpu_model and kind != "cpu" and kind.lower() in gpu_model.lower():
            return price
    return None


def add_cost(frame: pl.DataFrame, prices: dict[str, float]) -> pl.DataFrame:
    """`gpu_hour_price`, `cost_per_million_train_tokens` (GPUs x price / training tokens per hour x 1e6) and
    `run_cost` (GPUs x price x run_duration_s), for cells of a priced device kind."""
    if not prices or "train_tokens_per_s" not in frame.columns:
        return frame
    column = {c: frame.get_column(c) if c in frame.columns else [None] * frame.height for c in ("device", "gpu_model")}
    price = [gpu_hour_price(prices, d, g) for d, g in zip(column["device"], column["gpu_model"], strict=True)]
    hourly = pl.col("gpu_hour_price") * pl.col("gpus")
    return frame.with_columns(pl.Series("gpu_hour_price", price, dtype=pl.Float64)).with_columns(
        (hourly / (pl.col("train_tokens_per_s") * 3600) * 1e6).alias("cost_per_million_train_tokens"),
        (hourly * pl.col("run_duration_s") / 3600).alias("run_cost"),
    )


def add_rates(frame: pl.DataFrame) -> pl.DataFrame:
    """The samples/s the field's tables show: per GPU of training (the vendor's), and of the eval loop's
    forward (run_clm's `eval_samples_per_second`: eval tokens/s over the tokens of one sample)."""
    columns = []
    if "train_samples_per_s" in frame.columns:
        columns.append((pl.col("train_samples_per_s") / pl.col("gpus")).alias("train_samples_per_s_per_gpu"))
    if "eval_tokens_per_s" in frame.columns:
        columns.append((pl.col("eval_tokens_per_s") / pl.col("seq_len")).alias("eval_samples_per_s"))
    return frame.with_columns(columns) if columns else frame


def collect(
    cells: list[dict],
    metrics_files: list[str | Path],
    pruned: list[tuple[dict, str]] | None = None,
    calibration: str | Path | None = None,
    estimates: dict[str, dict[str, float | None]] | None = None,
    estimate_device: str = "cpu",
    prices: dict[str, float] | None = None,
    specs: list[dict] | None = None,
) -> pl.DataFrame:
    """One row per cell of the plan (`cells`: their records, `Cell.to_dict`), in plan order (`metrics_files[i]`
    is where cell i's metrics would be): its metrics (ok, oom, timeout), `failed` with the reason from
    failure.json, or `pending`; then one `pruned` row per pruned (record, reason), the reason in `note`.
    `estimates` ({device: {cell id: GB}}) and `prices` (cost.price_per_gpu_hour) add the estimate and cost
    columns; `specs` (each cell's current job spec) the `stale` column: what a result measured that the current
    spec would not (`record.spec_changes`), empty for a current one."""
    rows = []
    for i, (cell, path) in enumerate(zip(cells, metrics_files, strict=True)):
        cell_id = Cell(**cell).id
        failure = job_record(Path(path).parent, FAILURE_FILE)
        if Path(path).exists():
            metrics, problem = read_metrics(path)
            if problem is None:
                stale = spec_changes(metrics.get("config"), specs[i]) if specs else None
                rows.append({**flatten(metrics), "stale": stale})
            else:  # never aggregated as if fine: a failed row that says why
                log.warning("%s: %s", cell_id, problem)
                rows.append({**pending_row(cell, STATUS_FAILED), "note": problem[:300]})
        elif failure:  # the job died; its declared output is gone, the reason stayed beside it
            try:
                record = read_json(failure)
                reason = f"{record.get('error_type') or 'exit ' + str(record.get('returncode'))}: {record['error']}"
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                reason = f"{FAILURE_FILE} unreadable: {failure}: {type(e).__name__}: {e}"
                log.warning("%s: %s", cell_id, reason)
            rows.append({**pending_row(cell, STATUS_FAILED), "note": reason.splitlines()[0][:300]})
        else:
            rows.append(slurm_row(cell, job_record(Path(path).parent, JOB_FILE)))
    rows += [{**pending_row(cell, STATUS_PRUNED), "note": reason} for cell, reason in pruned or []]
    frame = pl.DataFrame(rows, schema_overrides=SCHEMA_OVERRIDES, infer_schema_length=None)
    frame = add_mfu(frame, read_json(calibration) if calibration else None)
    frame = add_estimates(frame, estimates or {}, estimate_device)
    frame = add_cost(frame, prices or {})
    frame = add_rates(frame)
    front = [c for c in FRONT_COLUMNS if c in frame.columns]
    log.info("summary: %d cells, %d columns", frame.height, frame.width)
    return frame.select(front + sorted(set(frame.columns) - set(front)))


def write(frame: pl.DataFrame, parquet: str | Path, csv: str | Path) -> None:
    for path, writer in ((parquet, frame.write_parquet), (csv, frame.write_csv)):
        buf = io.BytesIO()
        writer(buf)
        atomic_write_bytes(path, buf.getvalue())
