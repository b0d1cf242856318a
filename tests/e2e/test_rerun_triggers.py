"""What re-runs what, on a copy of the workflow (so its code can be edited): aggregation/table code never
re-runs training; a per-model config change re-runs that model's cells only."""

import shutil

import pytest
import yaml
from test_workflow import job_counts

from ftbench.report import tables

pytestmark = pytest.mark.e2e

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 128}


@pytest.fixture(scope="module")
def workflow(tmp_path_factory, repo, run_snakemake):
    root = tmp_path_factory.mktemp("wf")
    for part in ("Snakefile", "rules", "scripts", "schemas", "envs", "profiles", "report"):
        src = repo / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / part)
    with open(repo / ".test" / "config.yaml") as f:
        config = yaml.safe_load(f)
    config["matrix"] = {"strategies": ["ddp"], "gpus": [1], "seq_len": [64]}
    config["models"] = [
        {"name": name, "source": "config:llama", "tokenizer": "builtin:bpe-512", "architecture": TINY}
        for name in ("a", "b")
    ]
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    begin, end = tables.markers("ci")
    (root / "README.md").write_text(f"{begin}\n{end}\n")
    run_snakemake(root, "--profile", str(root / "profiles" / "local"), snakefile=root / "Snakefile")
    return root, config


def test_changing_aggregation_and_table_code_never_reruns_training(workflow, run_snakemake):
    root, _ = workflow
    for script in ("aggregate.py", "charts.py", "report.py"):
        with open(root / "scripts" / script, "a") as f:
            f.write("# edited\n")
    planned = job_counts(run_snakemake(root, "-n", snakefile=root / "Snakefile").stdout)
    assert planned == {"aggregate_metrics": 1, "render_charts": 2, "render_report": 1, "all": 1}


def test_a_per_model_change_reruns_only_that_models_cells(workflow, run_snakemake):
    root, config = workflow
    config["models"][1]["global_batch_size"] = 8
    (root / "changed.yaml").write_text(yaml.safe_dump(config))
    dry = run_snakemake(root, "-n", configfile=root / "changed.yaml", snakefile=root / "Snakefile").stdout
    assert job_counts(dry) == {
        "train_cell": 1,
        "aggregate_metrics": 1,
        "render_charts": 2,
        "render_report": 1,
        "all": 1,
    }
    (train_job,) = [block for block in dry.split("\nrule ")[1:] if block.startswith("train_cell:")]
    assert "output: results/ci/runs/b/ddp/1gpu/full-fp32-bs2-seq64/metrics.json" in train_job
