"""The real snakemake CLI over .test/config.yaml in a temp dir: the whole DAG, then re-run behaviour."""

import json
import re
import shutil

import polars as pl
import pytest

from ftbench.report import tables

pytestmark = pytest.mark.e2e

BEGIN, END = tables.markers("ci")
README = "# My benchmark notes\n\nWritten by hand.\n\n{begin}\n{end}\n\nMore hand-written text.\n"
CELLS = [
    f"tiny-llama/{strategy}/{gpus}gpu/full-fp32-bs2-seq64"
    for strategy in ("ddp", "fsdp", "zero3", "pipeline")
    for gpus in (1, 2)
    if (strategy, gpus) != ("pipeline", 1)
]
PRUNED = "tiny-llama/pipeline/1gpu/full-fp32-bs2-seq64"


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's own "Job stats" table (dry run or real run) as {rule: count}."""
    if "Nothing to be done" in output:
        return {}
    stats = output.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m[1] != "total"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, repo):
    work = tmp_path_factory.mktemp("e2e")
    shutil.copy(repo / ".test" / "config.yaml", work / "config.yaml")
    (work / "README.md").write_text(README.format(begin=BEGIN, end=END))
    return work


@pytest.fixture(scope="module")
def first_run(workdir, repo, run_snakemake):
    return run_snakemake(workdir, "--profile", str(repo / "profiles" / "local"))


def test_whole_dag_produces_every_cell_summary_and_table(workdir, first_run):
    assert job_counts(first_run.stderr) == {
        "prepare_dataset": 1,
        "train_tokenizer": 1,
        "prepare_model": 1,
        "build_token_cache": 1,
        "calibrate_device": 1,
        "train_cell": 7,
        "aggregate_metrics": 1,
        "render_charts": 1,
        "render_report": 1,
        "all": 1,
    }
    summary = pl.read_parquet(workdir / "results" / "ci" / "summary.parquet")
    assert summary.get_column("cell_id").to_list() == [*CELLS, PRUNED]
    assert summary.get_column("status").to_list() == ["ok"] * 7 + ["pruned"]
    assert summary.row(7, named=True)["note"] == "pipeline needs at least 2 stages (GPUs)"
    assert summary.get_column("zero_stage").to_list() == [None] * 4 + [3, 3] + [None] * 2
    for row in summary.head(7).iter_rows(named=True):
        assert 0 < row["mfu_measured"] < 1.5
        assert row["train_tokens_per_s"] > 0 and row["inference_tokens_per_s"] > 0
        assert 0 < row["eval_loss"] < 10 and row["peak_memory_gb"] > 0
        assert row["tokens_per_step"] == 4 * 64 and row["params_total"] == row["params_trainable"]
    assert (workdir / "docs" / "ci" / "summary.csv").read_bytes() == (
        workdir / "results" / "ci" / "summary.csv"
    ).read_bytes()


def test_readme_gets_the_table_and_keeps_its_own_text(workdir, first_run):
    text = (workdir / "README.md").read_text()
    assert text.startswith("# My benchmark notes\n\nWritten by hand.\n\n" + BEGIN)
    assert text.endswith(END + "\n\nMore hand-written text.\n")
    rows = [line for line in text.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 8 and sum(row.endswith("| ok |") for row in rows) == 7
    assert "| 1 | pipeline | — | full | fp32 | 64 | 2 | — |" in text and rows[-1].endswith("| pruned |")
    assert (workdir / "results" / "ci" / "tables.md").read_text() in text


def test_metrics_json_carries_the_contract_fields(workdir, first_run):
    metrics = json.loads((workdir / "results" / "ci" / "runs" / CELLS[1] / "metrics.json").read_text())
    for key in (
        "status",
        "cell_id",
        "train_tokens_per_s",
        "train_samples_per_s",
        "step_time_p50_s",
        "step_time_p95_s",
        "run_duration_s",
        "train_time_s",
        "train_loss_avg",
        "eval_loss",
        "eval_perplexity",
        "inference_tokens_per_s",
        "peak_memory_gb",
        "params_total",
        "params_trainable",
        "config",
        "provenance",
    ):
        assert key in metrics, key
    assert len(metrics["step_times_s"]) == 3 and len(metrics["losses"]) == 4
    assert len(metrics["memory_per_rank"]) == 2
    assert metrics["config"]["cell"]["gpus"] == 2
    assert metrics["provenance"]["versions"]["torch"]


def test_every_strategy_and_world_size_gives_the_same_losses(workdir, first_run):
    """Same seed, tokens and global batch: ddp, fsdp, zero3 at 1 and 2 GPUs and a 2-stage pipeline agree."""
    runs = workdir / "results" / "ci" / "runs"
    reference, *others = (json.loads((runs / c / "metrics.json").read_text())["losses"] for c in CELLS)
    for cell, losses in zip(CELLS[1:], others, strict=True):
        assert losses == pytest.approx(reference, abs=1e-3), cell


def test_second_run_has_nothing_to_do(workdir, first_run, run_snakemake):
    assert job_counts(run_snakemake(workdir, "-n").stdout) == {}


def test_deleting_one_metrics_file_reruns_that_cell_only(workdir, first_run, repo, run_snakemake):
    readme_before = (workdir / "README.md").read_text()
    (workdir / "results" / "ci" / "runs" / CELLS[0] / "metrics.json").unlink()
    planned = job_counts(run_snakemake(workdir, "-n").stdout)
    assert planned == {"train_cell": 1, "aggregate_metrics": 1, "render_charts": 1, "render_report": 1, "all": 1}
    rerun = run_snakemake(workdir, "--profile", str(repo / "profiles" / "local"))
    assert job_counts(rerun.stderr) == planned
    assert (workdir / "results" / "ci" / "runs" / CELLS[0] / "metrics.json").exists()
    after = (workdir / "README.md").read_text()
    assert after.split(BEGIN)[0] == readme_before.split(BEGIN)[0]
