"""README tables: one markdown table per model, rendered from a run's summary.csv and spliced between
the run's markers, so one README can show several runs. Text outside the markers is never touched; the
same summary renders the same bytes."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import polars as pl

from ftbench.cell import AXES, Axis
from ftbench.files import atomic_write_bytes, atomic_write_text
from ftbench.record import STATUS_OOM
from ftbench.report import aggregate
from ftbench.report.charts import KINDS, not_plotted, render_all
from ftbench.report.paths import ReportPaths

log = logging.getLogger(__name__)


def markers(run_name: str) -> tuple[str, str]:
    """The comment lines that enclose a run's tables in the README."""
    return f"<!-- ftbench:tables:begin {run_name} -->", f"<!-- ftbench:tables:end {run_name} -->"


# how a status reads in a table where it is not the value itself
STATUS_LABELS = {STATUS_OOM: "OOM"}


def _fmt(value, digits: int, thousands: bool = False) -> str:
    if value is None:
        return "—"
    if thousands:
        return f"{value:,.{digits}f}"
    return f"{value:.{digits}f}"


def _percent(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


# (header, summary column, formatter): the columns users compare, bench_pie's first. "epoch (s)" is one pass
# over the cell's training data and "eval fwd tok/s" the eval loop's forward throughput, as bench_pie's
# columns of those names are; "run (s)" is the cell's measured run, "decode tok/s" greedy generation
# (docs/measurements.md)
COLUMNS = [
    ("n×GPU", "gpus", str),
    ("strategy", "strategy", str),
    ("ZeRO", "zero_stage", lambda v: "—" if v is None else str(v)),
    ("method", "method", str),
    ("precision", "precision", str),
    ("seq", "seq_len", str),
    ("batch/GPU", "batch_size_per_gpu", str),
    ("global batch", "global_batch_size", lambda v: "—" if v is None else str(v)),
    ("epoch (s)", "epoch_s", lambda v: _fmt(v, 1)),
    ("run (s)", "run_duration_s", lambda v: _fmt(v, 1)),
    ("train tok/s", "train_tokens_per_s", lambda v: _fmt(v, 0, thousands=True)),
    ("eval fwd tok/s", "eval_tokens_per_s", lambda v: _fmt(v, 0, thousands=True)),
    ("decode tok/s", "inference_tokens_per_s", lambda v: _fmt(v, 0, thousands=True)),
    ("memory (GB)", "train_peak_memory_gb", lambda v: _fmt(v, 2)),
    ("loss", "train_loss_avg", lambda v: _fmt(v, 3)),
    ("perplexity", "eval_perplexity", lambda v: _fmt(v, 2)),
    ("MFU", "mfu_measured", _percent),
    ("status", None, lambda row: STATUS_LABELS.get(row["status"], row["status"]) + (" †" if row.get("stale") else "")),
]


# (header, column, formatter, after which header): shown beside an optional axis's column, what it changes
COMPANIONS = {"activation_checkpointing": [("HFU", "hfu_measured", _percent, "MFU")]}


def _axis_column(group: list[Axis]) -> tuple:
    """The column of the optional axes that share a header: one axis shows its value; several (the mesh: `tp`,
    `sg`) show `<label><value>` for each set off its default, else —."""
    first = group[0]
    if len(group) == 1:
        return first.header, first.field, lambda v: str(first.default if v is None else v), first.after

    def text(row: dict) -> str:
        parts = [f"{a.label}{row[a.field]}" for a in group if row.get(a.field) not in (None, a.default)]
        return ", ".join(parts) or "—"

    return first.header, None, text, first.after


def _off_default(rows: pl.DataFrame, column: str, default) -> bool:
    return column in rows.columns and not rows.get_column(column).fill_null(default).eq(default).all()


def columns_for(rows: pl.DataFrame, axes: tuple[Axis, ...] = AXES) -> list[tuple]:
    """The table's columns for a model's rows: COLUMNS, plus each optional axis's column (and its
    companions) where any cell is off its default, so a run at every default renders the table it always did."""
    extra = []
    optional = [a for a in axes if a.optional and a.header]
    for header in dict.fromkeys(a.header for a in optional):
        group = [a for a in optional if a.header == header]
        if any(_off_default(rows, a.field, a.default) for a in group):
            extra += [_axis_column(group), *(c for a in group for c in COMPANIONS.get(a.field, []))]
    columns = list(COLUMNS)
    for header, column, fmt, after in extra:
        at = next(i for i, (h, _, _) in enumerate(columns) if h == after) + 1
        columns.insert(at, (header, column, fmt))
    return columns


# a run from before a column existed shows the figure it had instead (the memory column: the whole run's peak)
FALLBACK = {"train_peak_memory_gb": "peak_memory_gb"}


def _cell(row: dict, column: str, fmt) -> str:
    """A value; with repeats its spread as ± half the range of the runs, relative to the median. Column None:
    `fmt` reads the whole row."""
    if column is None:
        return fmt(row)
    if row.get(column) is None and column in FALLBACK:
        column = FALLBACK[column]
    text = fmt(row.get(column))
    low, high, value = row.get(f"{column}_min"), row.get(f"{column}_max"), row.get(column)
    if (row.get("repeats") or 1) > 1 and None not in (low, high) and value:
        text += f" ±{50 * (high - low) / value:.1f}%"
    return text


def _row(row: dict, columns: list[tuple] = COLUMNS) -> str:
    return "| " + " | ".join(_cell(row, col, fmt) for _, col, fmt in columns) + " |"


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


def charts_block(rows: pl.DataFrame, model: str, charts_rel: str) -> str:
    """The model's charts under its table: PNGs inline, each linking its interactive HTML; the cells the
    charts cannot show are named."""
    links = [f"[![{k.title}]({charts_rel}/{model}/{k.name}.png)]({charts_rel}/{model}/{k.name}.html)" for k in KINDS]
    missing = not_plotted(rows, "train_tokens_per_s")
    return "\n".join(links) + (f"\n\nNot in the charts: {', '.join(missing)}." if missing else "")


def pivot_table(frame: pl.DataFrame, pivot: dict) -> str:
    """A declared pivot (rows x columns of one value) as markdown; missing combinations show "—"."""
    rows = frame.filter(pl.col("status") == "ok")
    for column, values in (pivot.get("filter") or {}).items():
        rows = rows.filter(pl.col(column).is_in(values))
    title = f"#### {pivot['title']}"
    if rows.is_empty():
        return f"{title}\n\nno ok cells match this table's filter"
    keys, on, value = pivot["rows"], pivot["columns"], pivot["value"]
    wide = rows.sort(on).pivot(on=on, index=keys, values=value, aggregate_function="median", sort_columns=True)
    heads = [c for c in wide.columns if c not in keys]
    digits = pivot.get("digits", 0)
    lines = [
        "| " + " | ".join([*keys, *(f"{on} {h}" for h in heads)]) + " |",
        "|" + "|".join("---" for _ in [*keys, *heads]) + "|",
    ]
    for row in wide.iter_rows(named=True):
        cells = [str(row[k]) for k in keys] + [_fmt(row[h], digits, thousands=True) for h in heads]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([title, "", *lines, "", f"{value} (median of ok cells)."])


def render(frame: pl.DataFrame, charts_rel: str | None = None, pivots: list[dict] = ()) -> str:
    """Markdown for every model of the summary, in the summary's order: its table, the provenance of its
    rows and (when `charts_rel` is given, relative to the README) its charts; then the declared pivots."""
    parts = []
    for model in frame.get_column("model").unique(maintain_order=True):
        model_rows = frame.filter(pl.col("model") == model)
        columns = columns_for(model_rows)
        header = "| " + " | ".join(h for h, _, _ in columns) + " |"
        rule = "|" + "|".join("---" for _ in columns) + "|"
        rows = [_row(row, columns) for row in model_rows.to_dicts()]
        table = "\n".join([f"#### {model}", "", header, rule, *rows])
        parts += [table, *filter(None, [stale_block(model_rows)]), provenance_line(model_rows)]
        if charts_rel is not None:
            parts.append(charts_block(model_rows, model, charts_rel))
    parts += [pivot_table(frame, pivot) for pivot in pivots]
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


def charts_relative(charts_dir: str | Path | None, readme: str | Path) -> str | None:
    return None if charts_dir is None else os.path.relpath(charts_dir, Path(readme).parent or ".")


def render_docs(docs_summary, readme, charts_dir=None, pivots=()) -> str:
    """The block a README shows for a run: always rendered from the committed docs/ copy of the summary."""
    frame = pl.read_csv(docs_summary, infer_schema_length=None)
    return render(frame, charts_relative(charts_dir, readme), pivots)


def publish(summary_csv, docs_summary, readme, tables_md, run_name: str, charts_dir=None, pivots=()) -> None:
    """Copy the summary under docs/, render the tables from that copy, splice them into the README. The
    splice is checked first: unbalanced markers leave the README and docs/ as they were."""
    data = Path(summary_csv).read_bytes()
    block = render_docs(io.BytesIO(data), readme, charts_dir, pivots)  # the very bytes docs/ gets
    readme = Path(readme)
    old = readme.read_text(encoding="utf-8")
    new = splice(old, block, run_name)
    atomic_write_bytes(docs_summary, data)
    if new != old:
        atomic_write_text(readme, new)
        log.info("rewrote the tables in %s", readme)
    atomic_write_text(tables_md, block)


def stale_block(rows: pl.DataFrame) -> str:
    """The footnote of a model's table: each result measured under another job spec than the config's now
    (config `select` left it as it was), and what differs."""
    if "stale" not in rows.columns:
        return ""
    stale = rows.filter(pl.col("stale").is_not_null()).select("cell_id", "stale").iter_rows()
    return "\n".join(f"† `{cell_id}`: measured under another spec ({what})." for cell_id, what in stale)


def rebuild(cells, metrics_files, pruned, paths: ReportPaths, readme, run_name, pivots=(), specs=None, **columns):
    """Summary, charts and README tables from whatever results exist (the onerror handler after
    --keep-going): failed cells show as failed, cells that never ran as pending. `columns`: aggregate.collect's
    estimate and cost inputs."""
    calibration = paths.calibration if Path(paths.calibration).exists() else None
    frame = aggregate.collect(cells, metrics_files, pruned, calibration, specs=specs, **columns)
    aggregate.write(frame, parquet=paths.parquet, csv=paths.csv)
    render_all(pl.read_csv(paths.csv, infer_schema_length=None), paths.charts_dir)
    publish(paths.csv, paths.docs_summary, readme, paths.tables_md, run_name, paths.charts_dir, pivots)
