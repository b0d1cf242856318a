"""Charts: the Vega-Lite spec carries the expected rows and encodings, nothing is dropped silently, and the
PNG decodes at the size the spec asks for."""

import struct

import polars as pl
import pytest

from ftbench.report import charts

BASE = {"method": "full", "precision": "fp32", "seq_len": 64, "batch_size_per_gpu": 2}


def row(strategy, gpus, tok_s, status="ok", mem=1.0, model="m"):
    cell_id = f"{model}/{strategy}/{gpus}gpu/full-fp32-bs2-seq64"
    return {
        "cell_id": cell_id,
        "model": model,
        "strategy": strategy,
        "gpus": gpus,
        "status": status,
        "train_tokens_per_s": tok_s,
        "peak_memory_gb": mem,
        "mfu_measured": 0.5 if tok_s else None,
        **BASE,
    }


@pytest.fixture
def frame():
    return pl.DataFrame(
        [
            row("ddp", 1, 1000.0),
            row("ddp", 2, 1800.0),
            row("ddp", 4, 3200.0),
            row("fsdp", 1, 900.0),
            row("fsdp", 2, None, status="oom"),
            row("ddp", 1, 50.0, model="other"),
        ]
    )


def spec_of(frame, kind_name, model="m"):
    kind = next(k for k in charts.KINDS if k.name == kind_name)
    return charts.chart(charts.with_scaling(frame), kind, model).to_dict()


def test_scaling_efficiency_is_per_gpu_throughput_over_the_fewest_gpus(frame):
    eff = charts.with_scaling(frame).filter(pl.col("model") == "m").sort("strategy", "gpus")
    assert eff.get_column("scaling_efficiency").to_list() == pytest.approx([1.0, 0.9, 0.8, 1.0, None], nan_ok=True)


def test_throughput_spec_has_one_line_per_strategy_and_only_the_models_ok_rows(frame):
    spec = spec_of(frame, "throughput")
    assert spec["mark"] == {"type": "line", "point": True}
    enc = spec["encoding"]
    assert (enc["x"]["field"], enc["y"]["field"], enc["color"]["field"]) == ("gpus", "train_tokens_per_s", "strategy")
    values = spec["data"]["values"]
    assert sorted((v["strategy"], v["gpus"], v["train_tokens_per_s"]) for v in values) == [
        ("ddp", 1, 1000.0),
        ("ddp", 2, 1800.0),
        ("ddp", 4, 3200.0),
        ("fsdp", 1, 900.0),
    ]
    # the OOM cell is not plotted, and the chart says so
    assert spec["title"]["subtitle"] == "not plotted: 1 cell(s) (1 oom)"
    assert charts.not_plotted(frame.filter(pl.col("model") == "m"), "train_tokens_per_s") == [
        "m/fsdp/2gpu/full-fp32-bs2-seq64 (oom)"
    ]


def test_memory_spec_is_bars_by_strategy_and_gpu_count(frame):
    spec = spec_of(frame, "memory")
    enc = spec["encoding"]
    assert spec["mark"]["type"] == "bar"
    assert (enc["x"]["field"], enc["xOffset"]["field"], enc["y"]["field"]) == ("strategy", "gpus", "peak_memory_gb")


def test_a_run_varying_precision_gets_a_panel_per_precision(frame):
    bf16 = frame.with_columns(pl.lit("bf16").alias("precision"), (pl.col("cell_id") + "-bf16").alias("cell_id"))
    spec = spec_of(pl.concat([frame, bf16]), "throughput")
    assert spec["facet"]["column"]["field"] == "variant"
    assert {v["variant"] for v in spec["data"]["values"]} == {"fp32", "bf16"}


def test_render_model_writes_png_svg_html_and_the_png_decodes(frame, tmp_path):
    charts_dir = tmp_path / "docs" / "run" / "charts"
    pngs = charts.render_model(frame, "m", charts_dir)
    assert [p.name for p in pngs] == ["throughput.png", "scaling.png", "memory.png", "mfu.png"]
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        # 260 x 200 plot area at scale 2, plus axes, legend and title
        assert 2 * 260 < width < 2 * 600 and 2 * 200 < height < 2 * 400, (png.name, width, height)
        assert png.with_suffix(".svg").read_text().startswith("<svg")
        page = png.with_suffix(".html").read_text()
        # offline: the one bundle under docs/, by a relative path; no CDN, nothing inlined
        assert '<script src="../../../vega-bundle.js"></script>' in page and "http" not in page.split("<body>")[0]
        assert "vegaEmbed(" in page and len(page) < 100_000
    bundle = (tmp_path / "docs" / "vega-bundle.js").read_text()
    assert "vegaEmbed" in bundle and len(bundle) > 500_000
    table = pl.read_csv(charts_dir / "m" / "table.csv")
    assert table.height == 5 and "scaling_efficiency" in table.columns


def test_repeats_give_the_throughput_chart_error_bars(frame):
    spread = frame.with_columns(
        (pl.col("train_tokens_per_s") * 0.9).alias("train_tokens_per_s_min"),
        (pl.col("train_tokens_per_s") * 1.1).alias("train_tokens_per_s_max"),
    )
    spec = spec_of(spread, "throughput")
    line, bars = spec["layer"]
    assert line["mark"] == {"type": "line", "point": True} and bars["mark"]["type"] == "errorbar"
    assert (bars["encoding"]["y"]["field"], bars["encoding"]["y2"]["field"]) == (
        "train_tokens_per_s_min",
        "train_tokens_per_s_max",
    )
    assert "layer" not in spec_of(frame, "throughput")  # one run per cell: no error bars
