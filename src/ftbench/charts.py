"""Charts of a run's summary (altair): per model, training throughput and scaling efficiency against the GPU
count (one line per strategy), peak memory per GPU and MFU by strategy. Each is saved as PNG and SVG
(vl-convert, no browser) and as interactive HTML. Cells without the plotted value (OOM, failed, timeout,
pending, pruned) are never dropped silently: they are named in the chart's subtitle and in `not_plotted`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import polars as pl

from ftbench.files import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

FORMATS = ("png", "svg", "html")
GROUP = ["model", "strategy", "method", "precision", "seq_len", "batch_size_per_gpu"]
"""Cells that differ only in their GPU count: one line of a chart."""


@dataclass(frozen=True)
class Kind:
    name: str
    title: str
    column: str
    axis: str


KINDS = [
    Kind("throughput", "Training throughput", "train_tokens_per_s", "train tokens/s"),
    Kind("scaling", "Scaling efficiency", "scaling_efficiency", "tokens/s per GPU vs the fewest GPUs"),
    Kind("memory", "Peak memory per GPU", "peak_memory_gb", "peak memory (GB)"),
    Kind("mfu", "Model FLOPs utilisation", "mfu_measured", "MFU (measured matmul ceiling)"),
]


def with_scaling(frame: pl.DataFrame) -> pl.DataFrame:
    """Add `scaling_efficiency`: tokens/s per GPU over that of the smallest GPU count of the same line."""
    per_gpu = pl.col("train_tokens_per_s") / pl.col("gpus")
    ok = pl.col("status") == "ok"
    base = (
        frame.filter(ok & pl.col("train_tokens_per_s").is_not_null())
        .sort("gpus")
        .group_by(GROUP, maintain_order=True)
        .agg(per_gpu.first().alias("_base_per_gpu"))
    )
    joined = frame.join(base, on=GROUP, how="left", nulls_equal=True)
    return joined.with_columns((per_gpu / pl.col("_base_per_gpu")).alias("scaling_efficiency")).drop("_base_per_gpu")


def line_label(frame: pl.DataFrame) -> pl.DataFrame:
    """One legend entry per line: the strategy, plus method/precision/seq when the run varies them."""
    varying = [c for c in ("method", "precision", "seq_len") if frame.get_column(c).n_unique() > 1]
    parts = [pl.col("strategy")] + [pl.col(c).cast(pl.String) for c in varying]
    return frame.with_columns(pl.concat_str(parts, separator=" ").alias("line"))


def not_plotted(frame: pl.DataFrame, column: str) -> list[str]:
    """Cells of the frame without a value to plot, as "<cell> (<status>)"."""
    missing = frame.filter((pl.col("status") != "ok") | pl.col(column).is_null())
    return [f"{c} ({s})" for c, s in missing.select("cell_id", "status").iter_rows()]


def chart(frame: pl.DataFrame, kind: Kind, model: str) -> alt.Chart:
    """One model's chart of one kind."""
    rows = line_label(frame.filter(pl.col("model") == model))
    plotted = rows.filter((pl.col("status") == "ok") & pl.col(kind.column).is_not_null())
    missing = not_plotted(rows, kind.column)
    subtitle = f"not plotted: {', '.join(missing)}" if missing else ""
    data = plotted.select("cell_id", "line", "gpus", "status", kind.column).to_dicts()
    base = alt.Chart(alt.Data(values=data)).properties(
        title=alt.TitleParams(f"{model}: {kind.title}", subtitle=subtitle), width=360, height=220
    )
    y = alt.Y(f"{kind.column}:Q", title=kind.axis)
    tooltip = ["cell_id:N", "status:N", alt.Tooltip(f"{kind.column}:Q", format=",.3~f")]
    if kind.name in ("throughput", "scaling"):
        x = alt.X("gpus:O", title="GPUs")
        return base.mark_line(point=True).encode(x=x, y=y, color=alt.Color("line:N", title="strategy"), tooltip=tooltip)
    return base.mark_bar().encode(
        x=alt.X("line:N", title="strategy"),
        xOffset="gpus:O",
        y=y,
        color=alt.Color("gpus:O", title="GPUs"),
        tooltip=tooltip,
    )


def chart_path(out_dir: str | Path, model: str, kind: str, fmt: str) -> Path:
    return Path(out_dir) / model / f"{kind}.{fmt}"


def save(spec: alt.Chart, stem: Path) -> None:
    """PNG, SVG and HTML of one chart; PNG and SVG through vl-convert (no browser)."""
    import vl_convert

    vl = spec.to_dict()
    atomic_write_bytes(stem.with_suffix(".png"), vl_convert.vegalite_to_png(vl, scale=2))
    atomic_write_text(stem.with_suffix(".svg"), vl_convert.vegalite_to_svg(vl))
    atomic_write_text(stem.with_suffix(".html"), spec.to_html())


def render_all(frame: pl.DataFrame, out_dir: str | Path) -> list[Path]:
    """Every chart of every model of the summary; returns the PNG paths."""
    frame = with_scaling(frame)
    pngs = []
    for model in frame.get_column("model").unique(maintain_order=True):
        for kind in KINDS:
            stem = chart_path(out_dir, model, kind.name, "png").with_suffix("")
            save(chart(frame, kind, model), stem)
            pngs.append(stem.with_suffix(".png"))
    log.info("wrote %d charts under %s", len(pngs), out_dir)
    return pngs
