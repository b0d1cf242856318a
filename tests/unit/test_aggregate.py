import json

import polars as pl
import pytest
from helpers import record

from ftbench.report import aggregate


def write_metrics(runs, cell_id, **fields):
    path = runs / cell_id / "metrics.json"
    path.parent.mkdir(parents=True)
    model, strategy, gpus, _ = cell_id.split("/")
    base = {
        "status": "ok",
        "cell_id": cell_id,
        "model": model,
        "strategy": strategy,
        "gpus": int(gpus[:-3]),
        "method": "full",
        "precision": "fp32",
        "batch_size_per_gpu": 8,
        "seq_len": 128,
        "train_tokens_per_s": 100.0,
        "step_times_s": [0.1, 0.2],
        "config": {"seed": 0},
        "provenance": {"host": "h", "versions": {"torch": "2.13"}},
    }
    path.write_text(json.dumps({**base, **fields}))


def test_collect_lists_every_expected_cell_and_marks_missing_ones_pending(tmp_path):
    cells = ["m/ddp/1gpu/full-fp32-bs8-seq128", "m/ddp/2gpu/full-fp32-bs8-seq128"]
    write_metrics(tmp_path, cells[0], train_tokens_per_s=123.0)
    frame = aggregate.collect([record(c) for c in cells], [tmp_path / c / "metrics.json" for c in cells])
    assert frame.get_column("cell_id").to_list() == cells
    assert frame.get_column("status").to_list() == ["ok", "pending"]
    assert frame.get_column("gpus").to_list() == [1, 2]
    assert frame.row(0, named=True)["train_tokens_per_s"] == 123.0
    # provenance spread into columns; per-step lists and nested config stay in metrics.json
    assert frame.row(0, named=True)["torch_version"] == "2.13" and frame.row(0, named=True)["host"] == "h"
    assert "step_times_s" not in frame.columns and "config" not in frame.columns
    assert frame.columns[: len(aggregate.KEY_COLUMNS) + 1] == [*aggregate.KEY_COLUMNS, "status"]


def test_write_produces_matching_parquet_and_csv(tmp_path):
    cells = ["m/ddp/1gpu/full-fp32-bs8-seq128"]
    write_metrics(tmp_path / "runs", cells[0])
    frame = aggregate.collect([record(c) for c in cells], [tmp_path / "runs" / cells[0] / "metrics.json"])
    aggregate.write(frame, tmp_path / "s.parquet", tmp_path / "s.csv")
    assert pl.read_parquet(tmp_path / "s.parquet").equals(frame)
    assert pl.read_csv(tmp_path / "s.csv").get_column("cell_id").to_list() == cells


def test_pruned_cells_are_rows_with_their_reason(tmp_path):
    cells = ["m/ddp/1gpu/full-fp32-bs8-seq128"]
    write_metrics(tmp_path, cells[0])
    frame = aggregate.collect(
        [record(c) for c in cells],
        [tmp_path / cells[0] / "metrics.json"],
        pruned=[(record("m/pipeline/1gpu/full-fp32-bs8-seq128"), "pipeline needs at least 2 stages")],
    )
    row = frame.row(1, named=True)
    assert (row["status"], row["strategy"], row["note"]) == ("pruned", "pipeline", "pipeline needs at least 2 stages")


def test_mfu_divides_achieved_flops_by_the_measured_ceiling_and_datasheet(tmp_path):
    cells = ["m/ddp/1gpu/full-bf16-bs8-seq128", "m/ddp/2gpu/full-fp32-bs8-seq128"]
    write_metrics(
        tmp_path,
        cells[0],
        precision="bf16",
        achieved_flops_per_s_per_gpu=5e14,
        provenance={"gpu_model": "NVIDIA H100 80GB HBM3", "versions": {}},
    )
    write_metrics(
        tmp_path,
        cells[1],
        achieved_flops_per_s_per_gpu=1e13,
        provenance={"gpu_model": "NVIDIA H100 80GB HBM3", "versions": {}},
    )
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"matmul": {"bf16": {"flops_per_s": 6e14}, "fp32": {"flops_per_s": 5e13}}}))
    frame = aggregate.collect(
        [record(c) for c in cells], [tmp_path / c / "metrics.json" for c in cells], calibration=calibration
    )
    bf16, fp32 = frame.rows(named=True)
    assert bf16["mfu_measured"] == pytest.approx(5 / 6) and bf16["mfu_datasheet"] == pytest.approx(500 / 989)
    assert fp32["mfu_measured"] == pytest.approx(0.2) and fp32["mfu_datasheet"] == pytest.approx(10 / 67)
    assert "h100" in bf16["datasheet_source"]


def test_each_row_carries_the_estimate_for_the_device_it_ran_on_and_its_error(tmp_path):
    cells = ["m/ddp/1gpu/full-fp32-bs8-seq128", "m/ddp/2gpu/full-fp32-bs8-seq128", "m/ddp/4gpu/full-fp32-bs8-seq128"]
    write_metrics(tmp_path, cells[0], train_peak_memory_gb=2.0, provenance={"device": "cpu", "versions": {}})
    write_metrics(tmp_path, cells[1], train_peak_memory_gb=4.0, provenance={"device": "cuda", "versions": {}})
    estimates = {"cpu": {c: 2.5 for c in cells}, "cuda": {c: 3.0 for c in cells}}
    frame = aggregate.collect(
        [record(c) for c in cells], [tmp_path / c / "metrics.json" for c in cells], estimates=estimates
    )
    rows = frame.select("estimated_memory_gb", "estimate_error").rows()
    # the pending cell: the estimate for the configured device (cpu by default), nothing to compare with
    assert rows == [(2.5, pytest.approx(0.25)), (3.0, pytest.approx(-0.25)), (2.5, None)]


def test_cost_columns_price_each_cell_by_its_device_kind(tmp_path):
    cells = ["m/ddp/2gpu/full-fp32-bs8-seq128", "m/ddp/1gpu/full-fp32-bs8-seq128", "m/fsdp/1gpu/full-fp32-bs8-seq128"]
    h100 = {"device": "cuda", "gpu_model": "NVIDIA H100 80GB HBM3", "versions": {}}
    write_metrics(tmp_path, cells[0], train_tokens_per_s=1000.0, run_duration_s=1800.0, provenance=h100)
    write_metrics(tmp_path, cells[1], run_duration_s=36.0, provenance={"device": "cpu", "versions": {}})
    a100 = {"device": "cuda", "gpu_model": "NVIDIA A100-SXM4-80GB", "versions": {}}
    write_metrics(tmp_path, cells[2], run_duration_s=36.0, provenance=a100)
    prices = {"h100": 3.6, "cpu": 0.1}
    frame = aggregate.collect([record(c) for c in cells], [tmp_path / c / "metrics.json" for c in cells], prices=prices)
    rows = frame.select("gpu_hour_price", "cost_per_million_train_tokens", "run_cost").rows()
    # 2 GPUs x 3.6 per hour at 3.6M tokens per hour: 2.0 per million tokens; half an hour: 3.6
    assert rows[0] == (3.6, pytest.approx(2.0), pytest.approx(3.6))
    assert rows[1] == (0.1, pytest.approx(0.1 / 0.36), pytest.approx(0.001))
    assert rows[2] == (None, None, None)  # no price for an A100
