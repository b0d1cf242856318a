"""Repeats, charts, the Snakemake report and `snakemake compare` on a real run of a tiny matrix."""

import struct

import polars as pl
import pytest
import yaml

from ftbench.files import read_json
from ftbench.report import tables

pytestmark = pytest.mark.e2e

RUN = "report-ci"
CELL = "tiny-llama/ddp/2gpu/full-fp32-bs2-seq64"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, repo):
    work = tmp_path_factory.mktemp("report")
    config = yaml.safe_load((repo / ".test" / "config.yaml").read_text())
    config.update(run_name=RUN, repeats=2)
    config["matrix"] = {"strategies": ["ddp"], "gpus": [1, 2], "seq_len": [64]}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    begin, end = tables.markers(RUN)
    (work / "README.md").write_text(f"# notes\n\n{begin}\n{end}\n")
    return work


@pytest.fixture(scope="module")
def run(workdir, repo, run_snakemake):
    return run_snakemake(workdir, "--profile", str(repo / "profiles" / "local"))


def test_repeats_are_separate_jobs_merged_into_the_median_and_spread(workdir, run):
    runs = workdir / "results" / RUN / "runs" / CELL
    each = [read_json(runs / f"repeat-{r}" / "metrics.json") for r in (0, 1)]
    merged = read_json(runs / "metrics.json")
    assert merged["repeats"] == 2 and merged["status"] == "ok"
    values = sorted(m["train_tokens_per_s"] for m in each)
    assert (merged["train_tokens_per_s_min"], merged["train_tokens_per_s_max"]) == (values[0], values[1])
    assert merged["losses"] == each[0]["losses"]  # same seed, same tokens: the repeats differ only in time
    row = next(line for line in (workdir / "README.md").read_text().splitlines() if line.startswith("| 2 | ddp"))
    assert "±" in row


def test_charts_are_written_and_linked_from_the_readme(workdir, run):
    charts = workdir / "docs" / RUN / "charts" / "tiny-llama"
    for kind in ("throughput", "scaling", "memory", "mfu"):
        png = (charts / f"{kind}.png").read_bytes()
        assert png[:4] == b"\x89PNG" and struct.unpack(">II", png[16:24])[0] > 400
        assert (charts / f"{kind}.svg").exists() and (charts / f"{kind}.html").exists()
        assert f"(docs/{RUN}/charts/tiny-llama/{kind}.png)" in (workdir / "README.md").read_text()
    assert pl.read_csv(charts / "table.csv").height == 2


def test_snakemake_report_has_a_category_per_model(workdir, run, run_snakemake):
    run_snakemake(workdir, "--report", "report.html")
    html = (workdir / "report.html").read_text()
    assert "tiny-llama" in html and "throughput.png" in html and "table.csv" in html


def test_compare_passes_an_identical_run_and_gates_on_a_planted_regression(workdir, run, run_snakemake):
    summary = pl.read_csv(workdir / "results" / RUN / "summary.csv", infer_schema_length=None)
    summary.write_csv(workdir / "same.csv")
    faster = summary.with_columns(pl.col("train_tokens_per_s") * 2)  # the reference was twice as fast
    faster.write_csv(workdir / "faster.csv")
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    for name, reference in (("same", "same.csv"), ("regressed", "faster.csv")):
        config["compare"] = {"reference": reference, "threshold": 0.1, "gate": True}
        (workdir / f"{name}.yaml").write_text(yaml.safe_dump(config))
    same = run_snakemake(workdir, "--cores", "1", "compare", configfile=workdir / "same.yaml")
    assert "0 regression(s)" in (workdir / "results" / RUN / "compare.md").read_text(), same.stdout
    regressed = run_snakemake(
        workdir, "--cores", "1", "-f", "compare", configfile=workdir / "regressed.yaml", check=False
    )
    assert regressed.returncode != 0
    log = (workdir / "logs" / RUN / "compare.log").read_text()
    assert f"| {CELL} | ok | 0.500 |" in log and "regression: train tok/s ×0.50" in log
