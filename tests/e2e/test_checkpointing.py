"""`matrix.activation_checkpointing` through the real workflow: the checkpointed cell is a cell of its own
(id segment `-ac-full`), it trains the same losses, HFU counts what it recomputes, and the README table
gains its columns."""

import json

import polars as pl
import pytest
from test_failures import TINY, profile, readme_row, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_checkpointed_cell_runs_beside_the_plain_one(tmp_path, raw_test_config, run_snakemake, repo):
    work = scenario(tmp_path, raw_test_config, {"tiny": TINY})
    config = (work / "config.yaml").read_text()
    (work / "config.yaml").write_text(
        config.replace("matrix:\n", "matrix:\n  activation_checkpointing: [none, full]\n")
    )
    run_snakemake(work, *profile(repo))
    runs = work / "results" / "fail" / "runs" / "tiny" / "ddp" / "2gpu"
    plain = json.loads((runs / "full-fp32-bs2-seq64" / "metrics.json").read_text())
    checkpointed = json.loads((runs / "full-fp32-bs2-seq64-ac-full" / "metrics.json").read_text())
    assert (plain["activation_checkpointing"], checkpointed["activation_checkpointing"]) == ("none", "full")
    assert "activation_checkpointing" not in plain["config"]["cell"]  # the default stays out of the job spec
    assert checkpointed["losses"] == pytest.approx(plain["losses"], abs=1e-3)
    assert checkpointed["flops_per_token"] == plain["flops_per_token"]
    assert checkpointed["hardware_flops_per_token"] > plain["hardware_flops_per_token"] == plain["flops_per_token"]
    frame = pl.read_csv(work / "results" / "fail" / "summary.csv", infer_schema_length=None)
    rows = {row["activation_checkpointing"]: row for row in frame.iter_rows(named=True)}
    assert rows["none"]["hfu_measured"] == pytest.approx(rows["none"]["mfu_measured"])
    assert rows["full"]["hfu_measured"] > rows["full"]["mfu_measured"] > 0
    readme = (work / "README.md").read_text()
    assert "| act. ckpt |" in readme and "| HFU |" in readme
    assert readme_row(work, "tiny").startswith("| 2 | ddp | — | full | fp32 | 64 | 2 | none |")
