"""README tables: one markdown table per model, rendered from a run's summary.csv and spliced between
the run's markers, so one README can show several runs. Text outside the markers is never touched; the
same summary renders the same bytes."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from ftbench import aggregate
from ftbench.files import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)


def markers(run_name: str) -> tuple[str, str]:
    """The comment lines that enclose a run's tables in the README."""
    return f"<!-- ftbench:tables:begin {run_name} -->", f"<!-- ftbench:tables:end {run_name} -->"


STATUS_LABELS = {
    "ok": "ok",
    "oom": "OOM",
    "timeout": "timeout",
    "failed": "failed",
    "pending": "pending",
    "pruned": "pruned",
}


def _fmt(value, digits: int, thousands: bool = False) -> str:
    if value is None:
        return "—"
    if thousands:
        return f"{value:,.{digits}f}"
    return f"{value:.{digits}f}"


# (header, summary column, formatter): the columns users compare, bench_pie's first
COLUMNS = [
    ("n×GPU", "gpus", str),
    ("strategy", "strategy", str),
    ("ZeRO", "zero_stage", lambda v: "—" if v is None else str(v)),
    ("method", "method", str),
    ("precision", "precision", str),
    ("seq", "seq_len", str),
    ("batch/GPU", "batch_size_per_gpu", str),
    ("global batch", "global_batch_size", lambda v: "—" if v is None else str(v)),
    ("epoch (s)", "run_duration_s", lambda v: _fmt(v, 1)),
    ("train tok/s", "train_tokens_per_s", lambda v: _fmt(v, 0, thousands=True)),
    ("inference tok/s", "inference_tokens_per_s", lambda v: _fmt(v, 0, thousands=True)),
    ("memory (GB)", "peak_memory_gb", lambda v: _fmt(v, 2)),
    ("loss", "train_loss_avg", lambda v: _fmt(v, 3)),
    ("perplexity", "eval_perplexity", lambda v: _fmt(v, 2)),
    ("MFU", "mfu_measured", lambda v: "—" if v is None else f"{100 * v:.1f}%"),
    ("status", "status", lambda v: STATUS_LABELS.get(v, v)),
]


def _row(record: dict) -> str:
    return "| " + " | ".join(fmt(record.get(col)) for _, col, fmt in COLUMNS) + " |"


def short_commit(commit: str) -> str:
    """12 hex digits, keeping the "-dirty" mark of a modified checkout."""
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def provenance_line(frame: pl.DataFrame) -> str:
    def first(column: str) -> str:
        if column not in frame.columns:
            return "?"
        values = frame.get_column(column).drop_nulls()
        return str(values[0]) if len(values) else "?"

    hardware = first("gpu_model") if first("gpu_model") != "?" else first("cpu_model")
    return (
        f"Run `{first('run_name')}` on {first('start_time')[:10]}, commit `{short_commit(first('git_commit'))}`, "
        f"{hardware} ({first('device')}), torch {first('torch_version')}, "
        f"transformers {first('transformers_version')}."
    )


def render(frame: pl.DataFrame) -> str:
    """Markdown for every model of the summary, in the summary's order."""
    parts = []
    for model in frame.get_column("model").unique(maintain_order=True):
        rows = frame.filter(pl.col("model") == model).to_dicts()
        header = "| " + " | ".join(h for h, _, _ in COLUMNS) + " |"
        rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
        parts.append("\n".join([f"#### {model}", "", header, rule, *map(_row, rows)]))
    parts.append(provenance_line(frame))
    return "\n\n".join(parts) + "\n"


def splice(text: str, block: str, run_name: str) -> str:
    """Replace what lies between the run's markers with `block`; append a marked section if there are none."""
    BEGIN, END = markers(run_name)
    begins, ends = text.count(BEGIN), text.count(END)
    if begins == ends == 0:
        return text.rstrip("\n") + f"\n\n{BEGIN}\n{block}{END}\n"
    if begins != 1 or ends != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(
            f"README markers are unbalanced ({begins} x {BEGIN!r}, {ends} x {END!r}); "
            "fix them by hand, the file was left untouched"
        )
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}{END}{tail}"


def publish(summary_csv, docs_summary, readme, tables_md, run_name: str) -> None:
    """Copy the summary under docs/, render the tables from that copy, splice them into the README."""
    atomic_write_bytes(docs_summary, Path(summary_csv).read_bytes())
    block = render(pl.read_csv(docs_summary, infer_schema_length=None))
    readme = Path(readme)
    old = readme.read_text(encoding="utf-8")
    new = splice(old, block, run_name)
    if new != old:
        atomic_write_text(readme, new)
        log.info("rewrote the tables in %s", readme)
    atomic_write_text(tables_md, block)


def rebuild(cells, metrics_files, pruned, calibration, parquet, csv, docs_summary, readme, tables_md, run_name):
    """Summary and README tables from whatever results exist (the onerror handler after --keep-going):
    failed cells show as failed, cells that never ran as pending."""
    calibration = calibration if Path(calibration).exists() else None
    aggregate.write(aggregate.collect(cells, metrics_files, pruned, calibration), parquet=parquet, csv=csv)
    publish(csv, docs_summary, readme, tables_md, run_name)
