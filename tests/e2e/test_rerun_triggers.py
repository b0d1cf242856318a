"""What re-runs what, on a copy of the workflow (so its code can be edited). The run is finished by the code of
`UPGRADE_FROM`, the last commit that landed, and then continued by this checkout's code in the same directory,
as a user's `git pull` does: the upgrade re-runs no finished cell; aggregation/table code never re-runs
training; a per-model config change re-runs that model's cells only, and the results `select` leaves as they
were are marked stale."""

import copy
import io
import os
import shutil
import subprocess
import tarfile

import helpers
import pytest
import yaml
from test_workflow import job_counts

from ftbench.report import tables

pytestmark = pytest.mark.e2e

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 128}
UPGRADE_FROM = "d7bfc41"
"""The last landed commit: its finished cells must stay finished under this checkout's code. Each change
starts by moving it to the last commit that landed."""
WORKFLOW_PARTS = ("Snakefile", "rules", "scripts", "schemas", "envs", "profiles", "report")


def code_at(repo, commit, into):
    """The files of `commit` (its workflow and its `src/`), read from git without touching the checkout."""
    tar = subprocess.run(["git", "archive", commit], cwd=repo, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    return into


def install_workflow(code, root):
    """Put a checkout's workflow files into `root`, replacing what was there."""
    for part in WORKFLOW_PARTS:
        src, dest = code / part, root / part
        if dest.is_dir():
            shutil.rmtree(dest)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory, repo, run_snakemake):
    root = tmp_path_factory.mktemp("wf")
    old = code_at(repo, UPGRADE_FROM, tmp_path_factory.mktemp("old-code"))
    install_workflow(old, root)
    with open(repo / ".test" / "config.yaml") as f:
        config = yaml.safe_load(f)
    # an optional id segment (-ac-full) among the finished cells: its id and job spec must stay as they were
    config["matrix"] = {
        "strategies": ["ddp"],
        "gpus": [1],
        "seq_len": [64],
        "activation_checkpointing": ["none", "full"],
    }
    config["models"] = [
        {"name": name, "source": "config:llama", "tokenizer": "builtin:bpe-512", "architecture": TINY}
        for name in ("a", "b")
    ]
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    begin, end = tables.markers("ci")
    (root / "README.md").write_text(f"{begin}\n{end}\n")
    # the old package first on the path: the Snakefile and every job it starts import the old ftbench
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", str(old / "src"), prepend=os.pathsep)
        run_snakemake(root, "--profile", str(root / "profiles" / "local"), snakefile=root / "Snakefile")
    install_workflow(repo, root)
    return root, config


def test_an_upgrade_reruns_no_finished_cell(workflow, run_snakemake):
    root, _ = workflow
    planned = job_counts(run_snakemake(root, "-n", snakefile=root / "Snakefile").stdout)
    assert "train_cell" not in planned, planned
    assert set(planned) <= {"aggregate_metrics", "render_charts", "render_report", "all"}


def test_changing_aggregation_and_table_code_never_reruns_training(workflow, run_snakemake):
    root, _ = workflow
    for script in ("aggregate.py", "charts.py", "report.py"):
        with open(root / "scripts" / script, "a") as f:
            f.write("# edited\n")
    planned = job_counts(run_snakemake(root, "-n", snakefile=root / "Snakefile").stdout)
    assert planned == {"aggregate_metrics": 1, "render_charts": 2, "render_report": 1, "all": 1}


def test_a_per_model_change_reruns_only_that_models_cells(workflow, run_snakemake):
    root, config = workflow
    config = copy.deepcopy(config)
    config["models"][1]["global_batch_size"] = 8
    (root / "changed.yaml").write_text(yaml.safe_dump(config))
    dry = run_snakemake(root, "-n", configfile=root / "changed.yaml", snakefile=root / "Snakefile").stdout
    assert job_counts(dry) == {
        "train_cell": 2,
        "aggregate_metrics": 1,
        "render_charts": 2,
        "render_report": 1,
        "all": 1,
    }
    outputs = [line for line in dry.splitlines() if line.strip().startswith("output: results/ci/runs/")]
    assert sorted(line.split("output: ")[1] for line in outputs) == [
        "results/ci/runs/b/ddp/1gpu/full-fp32-bs2-seq64-ac-full/metrics.json",
        "results/ci/runs/b/ddp/1gpu/full-fp32-bs2-seq64/metrics.json",
    ]


def test_results_select_leaves_as_they_were_are_marked_stale_in_the_summary(workflow, run_snakemake):
    """The README says which rows were measured under another spec: model b's batch changes, but `select`
    runs only model a's cells (whose spec is unchanged: nothing trains)."""
    root, config = workflow
    config = copy.deepcopy(config)
    config["models"][1]["global_batch_size"] = 8
    config["select"] = ["a/*"]
    (root / "select.yaml").write_text(yaml.safe_dump(config))
    local = str(root / "profiles" / "local")
    run = run_snakemake(root, "--profile", local, configfile=root / "select.yaml", snakefile=root / "Snakefile")
    assert "train_cell" not in job_counts(run.stderr)
    rows = helpers.summary(root, "ci")
    stale = {cell_id: row["stale"] for cell_id, row in rows.items()}
    assert stale == {
        "a/ddp/1gpu/full-fp32-bs2-seq64": None,
        "a/ddp/1gpu/full-fp32-bs2-seq64-ac-full": None,
        "b/ddp/1gpu/full-fp32-bs2-seq64": "cell.global_batch_size 4 → 8",
        "b/ddp/1gpu/full-fp32-bs2-seq64-ac-full": "cell.global_batch_size 4 → 8",
    }
    assert {row["status"] for row in rows.values()} == {"ok"}
    readme = (root / "README.md").read_text()
    assert "† `b/ddp/1gpu/full-fp32-bs2-seq64`: measured under another spec (cell.global_batch_size 4 → 8)." in readme
