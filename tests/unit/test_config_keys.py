"""The config pre-check: unknown keys at any level with the nearest valid key, schema errors in words."""

import pytest

from ftbench.errors import ConfigError
from ftbench.plan.config_check import check_config, key_path, validate
from ftbench.plan.matrix import plan


def test_key_paths_read_like_yaml():
    assert key_path(("matrix", "gpus", 0)) == "matrix.gpus[0]"
    assert key_path(("models", 1, "architecture", "num_layers")) == "models[1].architecture.num_layers"
    assert key_path(()) == "config"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["steps"].update(mesure=3), r"steps.mesure: unknown key; did you mean 'measure'\? steps takes"),
        (lambda c: c.update(Seed=1), r"Seed: unknown key; did you mean 'seed'\? the top level takes run_name"),
        (lambda c: c["models"][0].update(batch_size=1), r"models\[0\].batch_size: unknown key; did you mean"),
        (lambda c: c.update(hardware={"gpus_per_nod": 4}), r"hardware.gpus_per_nod: .*did you mean 'gpus_per_node'"),
        (lambda c: c.update(options={"lora": {"rank": 8}}), r"options.lora.rank: unknown key; options.lora takes r,"),
        (lambda c: c.update(zzz=1), r"zzz: unknown key; the top level takes"),
        (lambda c: c.update(options={"zero3": {"compile": True}}), r"options.zero3: unknown key; options takes ddp,"),
    ],
)
def test_unknown_keys_name_the_full_path_and_the_nearest_key(test_config_raw, mutate, message):
    mutate(test_config_raw)
    with pytest.raises(ConfigError, match=message):
        check_config(test_config_raw)


def test_every_problem_is_reported_at_once(test_config_raw):
    test_config_raw["matrix"].update(gpus=[0, 1.5], precision=["fp12"])
    test_config_raw["steps"]["mesure"] = 1
    with pytest.raises(ConfigError) as info:
        check_config(test_config_raw)
    text = str(info.value)
    assert text.startswith("config: 4 problems:")
    for line in (
        "steps.mesure: unknown key",
        "matrix.gpus[0]: 0 is out of range",
        "matrix.gpus[1]: 1.5 is a number",
        "matrix.precision[0]: 'fp12' is not allowed",
    ):
        assert line in text


def test_filter_columns_are_free_keys_checked_by_check_pivots(test_config_raw):
    test_config_raw["report"]["pivots"][0]["filter"] = {"gpus": [2]}
    check_config(test_config_raw)


def test_an_integer_written_as_a_float_is_refused(test_config_raw):
    test_config_raw["batch_size_per_gpu"] = 2.0
    with pytest.raises(ConfigError, match=r"batch_size_per_gpu: 2.0 is a number, it must be an integer"):
        validate(test_config_raw)


def test_a_valid_config_passes_and_plans(test_config_raw):
    assert plan(validate(test_config_raw)).cells


def test_a_select_pattern_matching_nothing_is_named(test_config):
    test_config["select"] = ["*/ddp/*", "*/dpp/*"]
    with pytest.raises(ConfigError, match=r"select\[1\]: '\*/dpp/\*' matches none of the 7 cells"):
        plan(test_config)


def test_a_matrix_pruned_to_nothing_says_why(test_config):
    test_config["matrix"].update(strategies=["pipeline"], gpus=[1])
    with pytest.raises(ConfigError, match=r"matrix: every one of the 1 cells was pruned.*pipeline needs at least 2"):
        plan(test_config)


@pytest.fixture
def test_config_raw(raw_test_config):
    return raw_test_config
