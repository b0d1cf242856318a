"""Config side of the hub and local sources: schema patterns, tokenizer ids, plan checks, the seq_len check."""

import json
import re

import pytest
import yaml

from ftbench.cell import Cell
from ftbench.errors import ConfigError
from ftbench.plan.config import tokenizer_id, tokenizer_source
from ftbench.plan.config_check import check_local_sources, validate
from ftbench.plan.matrix import check_downloaded_model, plan

LLAMA7 = "hf:meta-llama/Llama-2-7b-hf"


def hub_config(test_config, **model):
    test_config["models"] = [{"name": "llama-7b", "source": LLAMA7, **model}]
    return test_config


@pytest.mark.parametrize(
    ("source", "tokenizer", "expected"),
    [
        (LLAMA7, None, "hf--meta-llama--Llama-2-7b-hf"),
        ("hf:meta-llama/Llama-2-13b-hf", LLAMA7, "hf--meta-llama--Llama-2-7b-hf"),  # shares the 7b's cache
        ("hf:gpt2@refs/pr/1", None, "hf--gpt2--refs-pr-1"),
        ("config:llama", None, "bpe-2048-support"),
        ("config:llama", LLAMA7, "hf--meta-llama--Llama-2-7b-hf"),
    ],
)
def test_tokenizer_ids_are_deterministic_and_filesystem_safe(source, tokenizer, expected):
    model = {"name": "m", "source": source, **({"tokenizer": tokenizer} if tokenizer else {})}
    assert tokenizer_id({"dataset": {"name": "support"}}, model) == expected


def test_local_tokenizer_id_hashes_the_path():
    one = tokenizer_id({}, {"name": "a", "source": "local:/data/models/llama"})
    assert one.startswith("local--llama-") and "/" not in one
    assert one == tokenizer_id({}, {"name": "b", "source": "local:/data/models/llama/"})
    assert one != tokenizer_id({}, {"name": "c", "source": "local:/other/llama"})


def test_hub_models_default_to_their_own_tokenizer_config_models_to_the_builtin_bpe(test_config):
    test_config["matrix"]["strategies"] = ["ddp"]
    assert tokenizer_source({"name": "m", "source": LLAMA7}) == LLAMA7
    assert tokenizer_source({"name": "m", "source": "config:gpt2"}) == "builtin:bpe-2048"
    validated = validate(hub_config(test_config))
    assert "tokenizer" not in validated["models"][0]  # no schema default: the model's own
    assert [c.model for c in plan(validated).cells] == ["llama-7b", "llama-7b"]


def test_schema_takes_hub_and_local_sources_and_the_dataset_keys(test_config):
    test_config["dataset"].update(
        source="hf:HuggingFaceH4/ultrachat_200k@main", format="messages", split="train_sft", files=["data/*.parquet"]
    )
    test_config["models"].append({"name": "local", "source": "local:/models/x", "tokenizer": "local:/models/x"})
    config = validate(test_config)
    assert config["dataset"]["messages_column"] == "messages" and config["dataset"]["sample_by"] == "paragraph"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda c: c["dataset"].update(source="hf:"),
            r"dataset.source: 'hf:' is not a dataset source .*repo id is empty",
        ),
        (lambda c: c["dataset"].update(source="s3://bucket/data.csv"), r"dataset.source: 's3://.*' is not a dataset"),
        (lambda c: c["dataset"].update(format="chat"), r"dataset.format: 'chat' is not allowed; use one of columns"),
        (lambda c: c["models"][0].update(source="hf:a/b c"), r"models\[0\].source: 'hf:a/b c' is not a model source"),
        (lambda c: c["models"][0].update(tokenizer="hf:a@"), r"models\[0\].tokenizer: .*revision '' after '@'"),
    ],
)
def test_schema_refuses_bad_sources_by_name(test_config, mutate, message):
    mutate(test_config)
    with pytest.raises(ConfigError, match=message):
        validate(test_config)


def test_a_local_source_that_does_not_exist_is_refused_by_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "data.csv").write_text("a\n1\n")
    config = {
        "dataset": {"source": "local:data.csv"},
        "models": [
            {"name": "m", "source": "local:model"},
            {"name": "n", "source": "local:model", "tokenizer": "local:data.csv"},
        ],
    }
    with pytest.raises(
        ConfigError, match=r"models\[1\].tokenizer \(n\): 'local:data.csv': .*data.csv is not a directory"
    ):
        check_local_sources(config)
    config["models"].pop()
    check_local_sources(config)
    config["dataset"]["source"] = "local:gone.csv"
    with pytest.raises(ConfigError, match=r"dataset.source: 'local:gone.csv': .*gone.csv does not exist"):
        check_local_sources(config)


def test_a_downloaded_model_with_fewer_layers_than_pipeline_stages_names_the_cell(tmp_path):
    """Known only after the download: refused before any process group, naming the cell and the key."""
    config_json = tmp_path / "config.json"
    config_json.write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2, "max_position_embeddings": 128}))
    too_many = Cell("llama-7b", "pipeline", 4, "full", "fp32", 1, 64, 1)
    with pytest.raises(
        ConfigError, match=r"cell llama-7b/pipeline/4gpu/full-fp32-bs1-seq64: pipeline with 4 stages .* has 2"
    ):
        check_downloaded_model(too_many, config_json)
    check_downloaded_model(Cell("llama-7b", "pipeline", 2, "full", "fp32", 1, 64, 1), config_json)
    check_downloaded_model(Cell("llama-7b", "ddp", 4, "full", "fp32", 1, 64, 4), config_json)  # ddp: any count
    with pytest.raises(ConfigError, match=r"cell llama-7b/ddp/4gpu/.*seq256: matrix.seq_len 256 exceeds max_position"):
        check_downloaded_model(Cell("llama-7b", "ddp", 4, "full", "fp32", 1, 256, 4), config_json)
    config_json.write_text(json.dumps({"model_type": "gpt2", "n_layer": 3, "n_positions": 1024}))
    with pytest.raises(ConfigError, match="has 3"):
        check_downloaded_model(too_many, config_json)


def test_an_architecture_on_a_hub_model_is_refused(test_config):
    config = validate(
        hub_config(
            test_config, architecture={"hidden_size": 8, "num_layers": 1, "num_heads": 1, "intermediate_size": 8}
        )
    )
    with pytest.raises(ConfigError, match=r"models\[0\].architecture \(llama-7b\): only config: sources take one"):
        plan(config)


def test_seq_len_above_the_downloaded_max_position_embeddings_names_model_and_key(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 4096}))
    cell = Cell("llama-7b", "ddp", 8, "full", "bf16", 1, 8192, 8)
    with pytest.raises(ValueError, match=r"seq_len 8192 exceeds max_position_embeddings=4096 of model 'llama-7b'"):
        check_downloaded_model(cell, tmp_path / "config.json")
    check_downloaded_model(Cell("llama-7b", "ddp", 8, "full", "bf16", 1, 4096, 8), tmp_path / "config.json")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 1024}))
    with pytest.raises(ValueError, match="max_position_embeddings=1024"):
        check_downloaded_model(cell, tmp_path / "config.json")


def test_downloads_and_bookkeeping_run_on_the_submitting_host(repo):
    """Downloads (compute nodes often have no internet) and the bookkeeping (aggregation, repeats, charts,
    README, preview, compare) are localrules; everything that computes (data preparation, calibration,
    training) may go to the cluster."""
    local = set()
    for smk in (repo / "rules").glob("*.smk"):
        for block in re.split(r"^\s*rule ", smk.read_text(), flags=re.M)[1:]:
            if re.search(r"^\s+localrule: True", block, re.M):
                local.add(block.split(":", 1)[0])
    assert local == {
        "download_dataset",
        "download_tokenizer",
        "download_model",
        "aggregate_metrics",
        "render_charts",
        "render_report",
        "merge_repeats",
        "preview",
        "compare",
    }


def test_the_commented_cluster_matrix_in_config_yaml_is_ready_to_uncomment(repo):
    text = (repo / "config.yaml").read_text()
    block = text[text.index("# run_name: llama2-bitext") :].splitlines()
    example = yaml.safe_load("\n".join(line.removeprefix("#").removeprefix(" ") for line in block))
    assert example["matrix"]["strategies"] == ["ddp", "fsdp", "zero2", "zero3"]
    assert example["matrix"]["gpus"] == [4, 8, 16] and example["matrix"]["seq_len"] == [1024]
    schema = yaml.safe_load((repo / "schemas" / "config.schema.yaml").read_text())
    known = schema["properties"]["matrix"]["properties"]["strategies"]["items"]["enum"]
    example["matrix"]["strategies"] = [s for s in example["matrix"]["strategies"] if s in known]  # as they land
    config = validate(example, repo)
    assert len(plan(config).cells) == 2 * len(example["matrix"]["strategies"]) * 3
    ids = {tokenizer_id(config, m) for m in config["models"]}
    assert ids == {"hf--meta-llama--Llama-2-7b-hf"}  # 7b and 13b share one token cache
