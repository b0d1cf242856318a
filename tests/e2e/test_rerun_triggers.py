"""What re-runs what, on a copy of the workflow (so its code can be edited). The run is finished by the code of
`UPGRADE_FROM`, the last commit that landed, and then continued by this checkout's code in the same directory,
as a user's `git pull` does: the upgrade re-runs no finished cell; aggregation/table code never re-runs
training; a per-model config change re-runs that model's cells only, and the results `select` leaves as they
were are marked stale."""

import copy
import io
import os
import re
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


BUILDERS = {"prepare_dataset", "train_tokenizer", "prepare_model", "build_token_cache"}


def dry(run_snakemake, root, *args, configfile=None):
    """{rule: jobs} a dry run plans."""
    out = run_snakemake(root, "-n", *args, configfile=configfile, snakefile=root / "Snakefile").stdout
    return job_counts(out)


def preview(run_snakemake, root, *args, configfile=None):
    """The preview's states, {state: cells}, and its count of cells to run."""
    out = run_snakemake(root, "--cores", "1", "preview", *args, configfile=configfile, snakefile=root / "Snakefile")
    line = next(line for line in out.stdout.splitlines() if line.startswith("By state: "))
    states = {s.strip(): int(n) for s, n in re.findall(r"([a-z ]+) (\d+)", line.removeprefix("By state: "))}
    to_run = int(re.search(r"^(\d+) of \d+ selected cells to run", out.stdout, re.M)[1])
    return states, to_run


def write_config(root, name, config):
    (root / name).write_text(yaml.safe_dump(config))
    return root / name


def test_key_order_and_defaults_written_out_rerun_nothing(workflow, run_snakemake):
    """Case 1 of #27: a model's architecture in another order, a default written out, plan nothing (the
    preview agrees)."""
    root, config = workflow
    config = copy.deepcopy(config)
    config["models"][0]["architecture"] = dict(reversed(TINY.items()))
    config["dataset"]["eval_fraction"] = 0.1  # the schema's default
    reordered = write_config(root, "reordered.yaml", config)
    planned = dry(run_snakemake, root, configfile=reordered)
    assert not (BUILDERS | {"train_cell"}) & set(planned), planned
    assert preview(run_snakemake, root, configfile=reordered) == ({"done": 4}, 0)


def test_preview_says_what_snakemake_runs_and_why(workflow, run_snakemake):
    """Case 4: preview asks Snakemake, so its count is `snakemake -n`'s, under --config and --configfile
    alike, and it names the reason."""
    root, config = workflow
    seed = ("--config", "seed=1")  # new data and weights: every build and cell
    assert dry(run_snakemake, root, *seed)["train_cell"] == 4
    assert preview(run_snakemake, root, *seed) == ({"input changed": 4}, 4)
    config = copy.deepcopy(config)
    config["models"][1]["global_batch_size"] = 8
    changed = write_config(root, "batch.yaml", config)
    assert dry(run_snakemake, root, configfile=changed)["train_cell"] == 2
    assert preview(run_snakemake, root, configfile=changed) == ({"params changed": 2, "done": 2}, 2)


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


def test_runs_share_a_resource_exactly_when_its_build_agrees(workflow, run_snakemake):
    """Cases 2 and 3: a second run whose dataset differs builds its own resources and the first run re-runs
    nothing (preview agrees); a third whose builds agree with the second's shares them; a fresh clone (every
    workflow file newer than the resources) re-builds and re-trains nothing."""
    root, config = workflow
    other = copy.deepcopy(config)
    other.update(run_name="ci2", select=["a/*"])
    other["dataset"]["num_rows"] = config["dataset"]["num_rows"] + 100
    other["matrix"]["activation_checkpointing"] = ["none"]
    second = write_config(root, "second.yaml", other)
    until = ("--until", "build_token_cache", "prepare_model")
    run_snakemake(root, "--cores", "2", *until, configfile=second, snakefile=root / "Snakefile")
    built = {p.parent.name for p in (root / "resources" / "datasets").glob("*/manifest.json")}
    assert len(built) == 2, built  # the first run's and the second's
    assert not (BUILDERS | {"train_cell"}) & set(dry(run_snakemake, root)), "the first run re-runs"
    assert preview(run_snakemake, root) == ({"done": 4}, 0)
    third = write_config(root, "third.yaml", {**other, "run_name": "ci3"})
    assert dry(run_snakemake, root, *until, configfile=third) == {}
    for path in [root / "Snakefile", *(root / "rules").iterdir(), *(root / "scripts").iterdir()]:
        path.touch()
    assert dry(run_snakemake, root, *until, configfile=second) == {}
    assert not (BUILDERS | {"train_cell"}) & set(dry(run_snakemake, root)), "the first run re-runs"
