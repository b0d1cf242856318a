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

from ftbench.config import parse_cell_id
from ftbench.files import atomic_write_bytes

log = logging.getLogger(__name__)

STATUS_PENDING = "pending"

KEY_COLUMNS = ["cell_id", "model", "strategy", "gpus", "method", "precision", "batch_size_per_gpu", "seq_len"]
FRONT_COLUMNS = [
    *KEY_COLUMNS,
    "status",
    "zero_stage",
    "global_batch_size",
    "grad_accum_steps",
    "run_duration_s",
    "train_time_s",
    "train_tokens_per_s",
    "train_samples_per_s",
    "step_time_p50_s",
    "step_time_p95_s",
    "inference_tokens_per_s",
    "peak_memory_gb",
    "peak_memory_kind",
    "train_loss_avg",
    "eval_loss",
    "eval_perplexity",
    "params_total",
    "params_trainable",
]
SCHEMA_OVERRIDES = {"gpus": pl.Int64, "batch_size_per_gpu": pl.Int64, "seq_len": pl.Int64, "zero_stage": pl.Int64}


def flatten(metrics: dict) -> dict:
    """One summary row: scalar fields as they are, provenance spread into columns, lists left out."""
    row = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
    prov = metrics.get("provenance", {})
    row.update({k: v for k, v in prov.items() if not isinstance(v, dict | list)})
    row.update({f"{pkg}_version": v for pkg, v in prov.get("versions", {}).items()})
    return row


def pending_row(cell_id: str) -> dict:
    parts = parse_cell_id(cell_id)
    return {
        "cell_id": cell_id,
        **{k: parts[k] for k in ("model", "strategy", "method", "precision")},
        "gpus": int(parts["gpus"]),
        "batch_size_per_gpu": int(parts["bs"]),
        "seq_len": int(parts["seq"]),
        "status": STATUS_PENDING,
    }


def collect(cell_ids: list[str], metrics_files: list[str | Path]) -> pl.DataFrame:
    """One row per expected cell, in plan order; `metrics_files[i]` is where cell i's metrics would be."""
    rows = []
    for cell_id, path in zip(cell_ids, metrics_files, strict=True):
        if Path(path).exists():
            with open(path, encoding="utf-8") as f:
                rows.append(flatten(json.load(f)))
        else:
            rows.append(pending_row(cell_id))
    frame = pl.DataFrame(rows, schema_overrides=SCHEMA_OVERRIDES, infer_schema_length=None)
    front = [c for c in FRONT_COLUMNS if c in frame.columns]
    log.info("summary: %d cells, %d columns", frame.height, frame.width)
    return frame.select(front + sorted(set(frame.columns) - set(front)))


def write(frame: pl.DataFrame, parquet: str | Path, csv: str | Path) -> None:
    for path, writer in ((parquet, frame.write_parquet), (csv, frame.write_csv)):
        buf = io.BytesIO()
        writer(buf)
        atomic_write_bytes(path, buf.getvalue())
