"""The real snakemake on a cell whose model comes from the hub server (olah on 127.0.0.1) and whose data comes
from a local jsonl: the download rules, the shared token cache keyed by the hub tokenizer, one training job."""

import json

import helpers
import polars as pl
import pytest
import yaml

from ftbench.data.builtin_data import customer_support_rows
from ftbench.files import read_json, sha256_file
from ftbench.report import tables

pytestmark = pytest.mark.e2e

CELL = "hub-llama/ddp/1gpu/full-fp32-bs2-seq64"
TOKENIZER = "hf--acme--tiny-llama"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e-hub")
    data = work / "data" / "support.jsonl"
    data.parent.mkdir()
    data.write_text("".join(json.dumps(row) + "\n" for row in customer_support_rows(300, seed=1)))
    config = {
        "run_name": "hub",
        "dataset": {"name": "support", "source": f"local:{data}", "eval_fraction": 0.1},
        "models": [{"name": "hub-llama", "source": "hf:acme/tiny-llama"}],  # its own tokenizer
        "matrix": {"strategies": ["ddp"], "gpus": [1], "seq_len": [64]},
        "batch_size_per_gpu": 2,
        "steps": {"warmup": 1, "measure": 2, "eval": 1},
        "generation": {"prompt_tokens": 8, "new_tokens": 4},
        "report": {"readme": "README.md", "docs_dir": "docs"},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    begin, end = tables.markers("hub")
    (work / "README.md").write_text(f"# hub run\n\n{begin}\n{end}\n")
    return work


@pytest.fixture(scope="module")
def first_run(hub, workdir, repo, run_snakemake):
    return run_snakemake(workdir, "--profile", str(repo / "profiles" / "local"))


def test_hub_model_and_local_data_train_one_cell(hub, workdir, first_run):
    from test_workflow import job_counts

    assert job_counts(first_run.stderr) == {
        "download_dataset": 1,
        "download_tokenizer": 1,
        "download_model": 1,
        "build_token_cache": 1,
        "calibrate_device": 1,
        "train_cell": 1,
        "aggregate_metrics": 1,
        "render_charts": 1,
        "render_report": 1,
        "all": 1,
    }
    metrics = read_json(workdir / "results" / "hub" / "runs" / CELL / "metrics.json")
    assert metrics["status"] == "ok" and metrics["train_tokens_per_s"] > 0
    hub_repo = hub.repo("model", "acme/tiny-llama")
    assert metrics["token_cache"]["tokenizer_fingerprint"] == sha256_file(hub_repo / "tokenizer.json")
    assert (
        metrics["params_total"] == pl.read_parquet(workdir / "results" / "hub" / "summary.parquet")["params_total"][0]
    )


def test_resources_record_the_commit_and_the_local_file(hub, workdir, first_run):
    model = read_json(helpers.built(workdir, "models", "hub-llama") / "manifest.json")
    assert model["revision"] == hub.commits["acme/tiny-llama"]["main"] and model["source"] == "hf:acme/tiny-llama"
    assert read_json(helpers.built(workdir, "tokenizers", TOKENIZER) / "manifest.json")["revision"] == model["revision"]
    dataset = read_json(helpers.built(workdir, "datasets", "support") / "manifest.json")
    assert dataset["data_files"] == ["support.jsonl"]
    assert dataset["files"]["support.jsonl"] == sha256_file(workdir / "data" / "support.jsonl")
    cache = read_json(helpers.built(workdir, f"tokcache/support/{TOKENIZER}", "seq64") / "manifest.json")
    assert cache["render"]["format"] == "columns" and cache["tokens"]["train"] > 0


def test_second_run_has_nothing_to_do_and_an_edited_local_file_reruns(workdir, first_run, run_snakemake):
    from test_workflow import job_counts

    assert job_counts(run_snakemake(workdir, "-n").stdout) == {}
    data = workdir / "data" / "support.jsonl"
    with data.open("a") as f:  # an edited local source is an updated input of download_dataset
        f.write(json.dumps(customer_support_rows(1, seed=2)[0]) + "\n")
    planned = job_counts(run_snakemake(workdir, "-n").stdout)
    assert planned["download_dataset"] == 1 and planned["train_cell"] == 1
    assert "download_model" not in planned and "download_tokenizer" not in planned
