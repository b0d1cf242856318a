"""Resource directories keyed by content (ftbench.plan.builds) and the old directories kept in use where they
hold the same builds (ftbench.plan.legacy)."""

import copy
import json
import os

import pytest

from ftbench.data.download import data_patterns
from ftbench.files import atomic_write_json
from ftbench.plan import builds, legacy


def keys(config: dict) -> dict[str, str]:
    """Each build's directory, by rule and name."""
    found = builds.Builds.of(config, config["matrix"]["seq_len"]).by_rule
    return {f"{rule}:{b.name}": b.directory() for rule, by_id in found.items() for b in by_id.values()}


def test_key_order_and_defaults_written_out_change_no_directory(test_config):
    reordered = copy.deepcopy(test_config)
    model = reordered["models"][0]
    model["architecture"] = dict(reversed(list(model["architecture"].items())))
    reordered["dataset"] = dict(reversed(list(reordered["dataset"].items())))
    assert keys(reordered) == keys(test_config)
    defaults = builds.schema_defaults()["dataset"]
    for key in ("eval_fraction", "format", "template"):
        assert test_config["dataset"][key] == defaults[key]  # what validation filled in
    # a key at its default is left out of the params the rules compare
    cache = builds.cache_build(test_config, model["name"], 64)
    assert cache.params == {"seq_len": 64} and "render" not in builds.tokenizer_build(test_config, model).params


def test_a_changed_build_moves_its_directory_and_everything_built_from_it(test_config):
    before = keys(test_config)
    more_rows = copy.deepcopy(test_config)
    more_rows["dataset"]["num_rows"] += 100
    after = keys(more_rows)
    # the BPE tokenizer is trained on the dataset, the model carries the tokenizer: all move
    assert all(after[name] != before[name] for name in before), (before, after)
    template = copy.deepcopy(test_config)
    template["dataset"]["template"] = "{instruction}"
    moved = {name for name, path in keys(template).items() if path != before[name]}
    assert moved == {n for n in before if not n.startswith("prepare_dataset:")}


def test_a_hub_model_stays_where_it_is_when_only_the_data_changes(test_config):
    config = copy.deepcopy(test_config)
    config["models"] = [{"name": "hub", "source": "hf:acme/tiny-llama"}]
    model = builds.model_build(config, "hub")
    assert model.rule == "download_model" and model.input("tokenizer").rule == "download_tokenizer"
    other = copy.deepcopy(config)
    other["dataset"]["num_rows"] += 1
    assert builds.model_build(other, "hub").directory() == model.directory()
    assert builds.cache_build(other, "hub", 64).directory() != builds.cache_build(config, "hub", 64).directory()


def old_layout(root, config, model_name="tiny-llama", seq=64):
    """The directories the previous release built for `config`, with manifests as it wrote them."""
    dataset, cache = config["dataset"], builds.cache_build(config, model_name, seq)
    model = builds.model_build(config, model_name)
    tokenizer_hash, dataset_files = "ab" * 32, {"data.jsonl": "cd" * 32}
    manifests = {
        cache.input("dataset"): {
            "source": dataset["source"],
            "revision": "builtin-v1",
            "seed": config["seed"],
            "rows": dataset["num_rows"],
            "sample_by": dataset["sample_by"],
            "patterns": data_patterns(dataset.get("files"), dataset.get("split")),
            "files": dataset_files,
        },
        cache.input("tokenizer"): {
            "source": cache.input("tokenizer").params["source"],
            "dataset": dataset_files,
            "files": {"tokenizer.json": tokenizer_hash},
        },
        model: {
            "source": model.params["source"],
            "seed": config["seed"],
            "architecture": model.params["architecture"],
            "files": {"tokenizer.json": tokenizer_hash, "model.safetensors": "ef" * 32},
        },
        cache: {
            "seq_len": seq,
            "eval_fraction": dataset["eval_fraction"],
            "seed": config["seed"],
            "render": {k: dataset[k] for k in builds.RENDER_KEYS},
            "dataset": dataset_files,
            "tokenizer_fingerprint": tokenizer_hash,
        },
    }
    for build, manifest in manifests.items():
        atomic_write_json(root / build.legacy_directory / "manifest.json", manifest)
    return model, cache


@pytest.fixture
def in_tmp(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)


def test_old_directories_holding_the_same_builds_stay_in_use(test_config, in_tmp):
    model, cache = old_layout(in_tmp, test_config)
    assert legacy.adopted_inputs(test_config, model, cache) == ("resources/models/tiny-llama", cache.legacy_directory)
    assert builds.model_dir(test_config, "tiny-llama") == "resources/models/tiny-llama"


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.update(seed=1),
        lambda c: c["dataset"].update(num_rows=c["dataset"]["num_rows"] + 1),
        lambda c: c["dataset"].update(eval_fraction=0.2),
        lambda c: c["dataset"].update(template="{instruction}"),
        lambda c: c["models"][0]["architecture"].update(num_layers=5),
    ],
    ids=["seed", "num_rows", "eval_fraction", "template", "architecture"],
)
def test_old_directories_holding_another_build_are_left(test_config, in_tmp, change):
    old_layout(in_tmp, test_config)
    config = copy.deepcopy(test_config)
    change(config)
    model, cache = builds.model_build(config, "tiny-llama"), builds.cache_build(config, "tiny-llama", 64)
    assert legacy.adopted_inputs(config, model, cache) is None


def test_an_old_model_whose_tokenizer_is_not_the_caches_is_left(test_config, in_tmp):
    model, cache = old_layout(in_tmp, test_config)
    path = in_tmp / model.legacy_directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["tokenizer.json"] = "00" * 32
    atomic_write_json(path, manifest)
    assert legacy.adopted_inputs(test_config, model, cache) is None


def test_no_old_directory_stands_for_a_local_source_or_after_a_revision(test_config, in_tmp, monkeypatch):
    """A local source's edits are seen by its download rule's input only; a raised REVISION moves everything."""
    config = copy.deepcopy(test_config)
    config["dataset"]["source"] = "local:data.jsonl"
    model, cache = old_layout(in_tmp, config)
    assert legacy.adopted_inputs(config, model, cache) is None
    model, cache = old_layout(in_tmp, test_config)
    monkeypatch.setattr(legacy, "REVISION", builds.REVISION + 1)
    assert legacy.adopted_inputs(test_config, model, cache) is None


def test_the_defaults_builds_leave_out_are_the_ones_of_this_revision():
    """Keys at their default are left out of a build's key: a changed default must raise REVISION (and
    this pin with it), or directories built under the old default would be taken for the new one."""
    pinned = {
        "format": "columns",
        "template": "### Instruction:\n{instruction}\n\n### Response:\n{response}",
        "messages_column": "messages",
        "message_template": "<|{role}|>\n{content}\n",
        "sample_by": "paragraph",
        "num_rows": 2000,
        "eval_fraction": 0.1,
    }
    assert (builds.REVISION, builds.schema_defaults()) == (1, {"dataset": pinned, "seed": 0})
