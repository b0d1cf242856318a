"""Charts of a run's summary (altair): per model, training throughput and scaling efficiency against the GPU
count (one line per strategy), peak memory per GPU and MFU by strategy. Each is saved as PNG and SVG
(vl-convert, no browser) and as interactive HTML. Cells without the plotted value (OOM, failed, timeout,
pending, pruned) are never dropped silently: they are named in the chart's subtitle and in `not_plotted`.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from ftbench.cell import AXES, Axis
from ftbench.files import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import altair as alt

log = logging.getLogger(__name__)

FORMATS = ("png", "svg", "html")
GROUP = [a.field for a in AXES if a.field != "gpus"]
"""Cells that differ only in their GPU count: one line of a chart (summaries from before a field existed lack
its column)."""


@dataclass(frozen=True)
class Kind:
    name: str
    title: str
    column: str
    axis: str


TABLE_COLUMNS = [
    "cell_id",
    "gpus",
    "strategy",
    "method",
    "precision",
    "seq_len",
    "status",
    "train_tokens_per_s",
    "scaling_efficiency",
    "peak_memory_gb",
    "mfu_measured",
    "eval_loss",
]
"""The model's table in the Snakemake report."""

KINDS = [
    Kind("throughput", "Training throughput", "train_tokens_per_s", "train tokens/s"),
    Kind("scaling", "Scaling efficiency", "scaling_efficiency", "tokens/s per GPU vs the fewest GPUs"),
    Kind("memory", "Peak memory per GPU", "peak_memory_gb", "peak memory (GB)"),
    Kind("mfu", "Model FLOPs utilisation", "mfu_measured", "MFU (measured matmul ceiling)"),
]


def with_scaling(frame: pl.DataFrame) -> pl.DataFrame:
    """Add `scaling_efficiency`: tokens/s per GPU over that of the smallest GPU count of the same line.
    A summary without a metric yet (every cell pending or failed) gets it as an empty column."""
    absent = [k.column for k in KINDS if k.column not in frame.columns and k.column != "scaling_efficiency"]
    frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in absent)
    per_gpu = pl.col("train_tokens_per_s") / pl.col("gpus")
    ok = pl.col("status") == "ok"
    group = [c for c in GROUP if c in frame.columns]
    base = (
        frame.filter(ok & pl.col("train_tokens_per_s").is_not_null())
        .sort("gpus")
        .group_by(group, maintain_order=True)
        .agg(per_gpu.first().alias("_base_per_gpu"))
    )
    joined = frame.join(base, on=group, how="left", nulls_equal=True)
    return joined.with_columns((per_gpu / pl.col("_base_per_gpu")).alias("scaling_efficiency")).drop("_base_per_gpu")


def with_variant(frame: pl.DataFrame, axes: tuple[Axis, ...] = AXES) -> pl.DataFrame:
    """`variant`: the panel axes (method, precision, seq_len, checkpointing, mesh degrees...) a run varies
    besides the strategy, each value with its axis's label (`tp 0`: the strategy's default mesh); one panel each."""
    varying = [a for a in axes if a.panel and a.field in frame.columns and frame.get_column(a.field).n_unique() > 1]
    parts = [pl.lit(a.label) + pl.col(a.field).cast(pl.String) for a in varying] or [pl.lit("")]
    return frame.with_columns(pl.concat_str(parts, separator=" ").alias("variant"))


def not_plotted(frame: pl.DataFrame, column: str) -> list[str]:
    """Cells of the frame without a value to plot, as "<cell> (<status>)" (all of them while no cell has
    the column yet)."""
    value = pl.col(column).is_null() if column in frame.columns else pl.lit(True)
    missing = frame.filter((pl.col("status") != "ok") | value)
    return [f"{c} ({s})" for c, s in missing.select("cell_id", "status").iter_rows()]


def missing_summary(missing: list[str]) -> str:
    """ "not plotted: 3 cells (2 oom, 1 pruned)": the chart's subtitle; the README lists them by name."""
    if not missing:
        return ""
    counts: dict[str, int] = {}
    for entry in missing:
        status = entry.rsplit("(", 1)[1].rstrip(")")
        counts[status] = counts.get(status, 0) + 1
    detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"not plotted: {len(missing)} cell(s) ({detail})"


def chart(frame: pl.DataFrame, kind: Kind, model: str) -> alt.Chart:
    """One model's chart of one kind: a panel per variant (method, precision, seq_len, checkpointing) when it has
    several, one line (or bar) per strategy."""
    import altair as alt  # here, not at the top: tables.py imports this module to link charts, never to draw

    rows = with_variant(frame.filter(pl.col("model") == model))
    plotted = rows.filter((pl.col("status") == "ok") & pl.col(kind.column).is_not_null())
    spread = [c for c in (f"{kind.column}_min", f"{kind.column}_max") if c in plotted.columns]
    data = plotted.select("cell_id", "strategy", "variant", "gpus", "status", kind.column, *spread).to_dicts()
    y = alt.Y(f"{kind.column}:Q", title=kind.axis)
    tooltip = ["cell_id:N", "status:N", alt.Tooltip(f"{kind.column}:Q", format=",.3~f")]
    if kind.name in ("throughput", "scaling"):
        base = alt.Chart(alt.Data(values=data))
        x = alt.X("gpus:O", title="GPUs", axis=alt.Axis(labelAngle=0))
        encoded = base.mark_line(point=True).encode(x=x, y=y, color="strategy:N", tooltip=tooltip)
        if len(spread) == 2 and plotted.get_column(spread[0]).is_not_null().any():  # repeats: min-max error bars
            bars = base.mark_errorbar().encode(x=x, y=alt.Y(f"{spread[0]}:Q", title=kind.axis), y2=f"{spread[1]}:Q")
            encoded = alt.layer(encoded, bars.encode(color="strategy:N"))
    else:
        mark = alt.Chart(alt.Data(values=data)).mark_bar()
        encoded = mark.encode(
            x=alt.X("strategy:N", title=None),
            xOffset="gpus:O",
            y=y,
            color=alt.Color("gpus:O", title="GPUs"),
            tooltip=tooltip,
        )
    encoded = encoded.properties(width=260, height=200)
    if rows.get_column("variant").n_unique() > 1:
        encoded = encoded.facet(column=alt.Column("variant:N", title=None))
    title = alt.TitleParams(f"{model}: {kind.title}", subtitle=missing_summary(not_plotted(rows, kind.column)))
    return encoded.properties(title=title)


def chart_path(out_dir: str | Path, model: str, kind: str, fmt: str) -> Path:
    return Path(out_dir) / model / f"{kind}.{fmt}"


VEGA_BUNDLE = "vega-bundle.js"
"""Vega, Vega-Lite and Vega-Embed in one file (vl-convert's bundle, ~0.9 MB), once under the docs directory:
every chart page loads it by a relative path, so the pages open offline and none inlines a megabyte."""

PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta charset="UTF-8">
  <script src="{bundle}"></script>
</head>
<body>
  <div id="vis"></div>
  <script>vegaEmbed("#vis", {spec}, {{"mode": "vega-lite"}});</script>
</body>
</html>
"""


def vega_bundle_path(charts_dir: str | Path) -> Path:
    """docs/<run>/charts -> docs/vega-bundle.js: one bundle for every run's pages."""
    return Path(charts_dir).parents[1] / VEGA_BUNDLE


def ensure_vega_bundle(path: Path) -> None:
    if not path.exists():
        import vl_convert

        atomic_write_text(path, vl_convert.javascript_bundle())


def html_page(vl: dict, page: Path, bundle: Path) -> str:
    return PAGE.format(bundle=os.path.relpath(bundle, page.parent), spec=json.dumps(vl))


def save(spec: alt.Chart, stem: Path, bundle: Path) -> None:
    """PNG, SVG and HTML of one chart; PNG and SVG through vl-convert (no browser); the HTML loads `bundle`."""
    import vl_convert

    vl = spec.to_dict()
    atomic_write_bytes(stem.with_suffix(".png"), vl_convert.vegalite_to_png(vl, scale=2))
    atomic_write_text(stem.with_suffix(".svg"), vl_convert.vegalite_to_svg(vl))
    atomic_write_text(stem.with_suffix(".html"), html_page(vl, stem.with_suffix(".html"), bundle))


def render_model(frame: pl.DataFrame, model: str, out_dir: str | Path) -> list[Path]:
    """Every chart of one model (PNG, SVG, HTML each) and its rows as table.csv; returns the PNG paths."""
    if "scaling_efficiency" not in frame.columns:  # render_all adds it once for every model
        frame = with_scaling(frame)
    pngs = []
    bundle = vega_bundle_path(out_dir)
    ensure_vega_bundle(bundle)
    for kind in KINDS:
        stem = chart_path(out_dir, model, kind.name, "png").with_suffix("")
        save(chart(frame, kind, model), stem, bundle)
        pngs.append(stem.with_suffix(".png"))
    buf = io.BytesIO()
    frame.filter(pl.col("model") == model).select(c for c in TABLE_COLUMNS if c in frame.columns).write_csv(buf)
    atomic_write_bytes(Path(out_dir) / model / "table.csv", buf.getvalue())
    log.info("wrote the charts of %s under %s", model, out_dir)
    return pngs


def render_all(frame: pl.DataFrame, out_dir: str | Path) -> list[Path]:
    frame = with_scaling(frame)
    return [
        png
        for model in frame.get_column("model").unique(maintain_order=True)
        for png in render_model(frame, model, out_dir)
    ]
