import json
import re

import pytest

from ftbench.cell import OPTIONS_WILDCARD, Cell, parse_cell_id
from ftbench.errors import ConfigError
from ftbench.plan.config_check import validate
from ftbench.plan.matrix import job_spec, plan


@pytest.fixture
def test_config(test_config):
    """The CI config narrowed to ddp: the expectations below are about data-parallel cells."""
    test_config["matrix"]["strategies"] = ["ddp"]
    return test_config


def test_plan_expands_every_combination_in_stable_order(test_config):
    test_config["matrix"]["seq_len"] = [64, 32]
    cells = plan(test_config).cells
    assert [c.id for c in cells] == [
        "tiny-llama/ddp/1gpu/full-fp32-bs2-seq64",
        "tiny-llama/ddp/1gpu/full-fp32-bs2-seq32",
        "tiny-llama/ddp/2gpu/full-fp32-bs2-seq64",
        "tiny-llama/ddp/2gpu/full-fp32-bs2-seq32",
    ]
    assert plan(test_config).pruned == []


def test_cell_id_round_trips_through_its_parser():
    cell = Cell("m-1.5b", "ddp", 16, "full", "bf16", 4, 1024, 128)
    assert cell.id == "m-1.5b/ddp/16gpu/full-bf16-bs4-seq1024"
    assert parse_cell_id(cell.id) == {
        "model": "m-1.5b",
        "strategy": "ddp",
        "gpus": "16",
        "method": "full",
        "precision": "bf16",
        "bs": "4",
        "seq": "1024",
        "activation_checkpointing": "none",
        "tp_degree": 0,
        "shard_group": 0,
    }
    with pytest.raises(ValueError, match="not a cell id"):
        parse_cell_id("m/ddp/16/full")


def test_optional_segments_appear_only_off_their_defaults_and_parse_back():
    plain = Cell("m", "fsdp", 2, "lora", "fp32", 2, 64, 4)
    checkpointed = Cell("m", "fsdp", 2, "lora", "fp32", 2, 64, 4, activation_checkpointing="full")
    assert plain.id == "m/fsdp/2gpu/lora-fp32-bs2-seq64"
    assert checkpointed.id == "m/fsdp/2gpu/lora-fp32-bs2-seq64-ac-full"
    assert parse_cell_id(checkpointed.id)["activation_checkpointing"] == "full"
    assert parse_cell_id(checkpointed.id)["seq"] == "64"
    # the job spec of a default-valued field is what it was before the field existed
    assert "activation_checkpointing" not in plain.to_dict()
    assert checkpointed.to_dict()["activation_checkpointing"] == "full"
    assert Cell(**plain.to_dict()) == plain and Cell(**checkpointed.to_dict()) == checkpointed
    # the rules' {options} wildcard takes exactly these suffixes (and the empty one)
    wildcard = re.compile(OPTIONS_WILDCARD)
    assert wildcard.fullmatch("") and wildcard.fullmatch("-ac-full") and not wildcard.fullmatch("-full")


def test_activation_checkpointing_is_an_axis_after_every_other(test_config):
    test_config["matrix"]["activation_checkpointing"] = ["none", "full"]
    ids = [c.id for c in plan(test_config).cells]
    assert ids == [
        "tiny-llama/ddp/1gpu/full-fp32-bs2-seq64",
        "tiny-llama/ddp/1gpu/full-fp32-bs2-seq64-ac-full",
        "tiny-llama/ddp/2gpu/full-fp32-bs2-seq64",
        "tiny-llama/ddp/2gpu/full-fp32-bs2-seq64-ac-full",
    ]


# The job spec of the CI matrix's first cell as the release before activation checkpointing wrote it
# (commit 33131f8). Snakemake re-runs a cell whose params change: this is what a finished run keeps.
SPEC_BEFORE_OPTIONAL_SEGMENTS = (
    '{"cell": {"batch_size_per_gpu": 2, "global_batch_size": 4, "gpus": 1, "method": "full", "model": '
    '"tiny-llama", "precision": "fp32", "seq_len": 64, "strategy": "ddp"}, "generation": {"new_tokens": 8, '
    '"prompt_tokens": 8}, "hardware": {"cpu_threads_per_rank": 1, "device": "auto"}, "optimizer": {"lr": 0.001, '
    '"max_grad_norm": 1.0, "weight_decay": 0.0}, "options": {}, "run_name": "ci", "seed": 0, "steps": {"eval": '
    '2, "measure": 3, "warmup": 1}}'
)


def test_a_default_cell_keeps_the_job_spec_and_id_of_the_last_release(test_config):
    cell = plan(test_config).cells[0]
    assert cell.id == "tiny-llama/ddp/1gpu/full-fp32-bs2-seq64"
    assert json.dumps(job_spec(test_config, cell), sort_keys=True) == SPEC_BEFORE_OPTIONAL_SEGMENTS


def test_global_batch_fills_with_gradient_accumulation(test_config):
    test_config["global_batch_size"] = 8
    by_gpus = {c.gpus: c for c in plan(test_config).cells}
    assert by_gpus[1].grad_accum_steps == 4 and by_gpus[2].grad_accum_steps == 2
    assert by_gpus[2].tokens_per_step == 8 * 64


def test_global_batch_defaults_to_one_micro_batch_per_rank(test_config):
    del test_config["global_batch_size"]
    by_gpus = {c.gpus: c for c in plan(test_config).cells}
    assert by_gpus[2].global_batch_size == 4 and by_gpus[2].grad_accum_steps == 1


def test_micro_batch_is_an_axis_below_a_models_own_and_above_the_top_level(test_config):
    test_config["matrix"].update(gpus=[2], batch_size_per_gpu=[1, 4])
    test_config["global_batch_size"] = 8
    cells = plan(test_config).cells
    assert [c.id for c in cells] == [
        "tiny-llama/ddp/2gpu/full-fp32-bs1-seq64",
        "tiny-llama/ddp/2gpu/full-fp32-bs4-seq64",
    ]
    assert [c.grad_accum_steps for c in cells] == [4, 1]
    test_config["models"][0]["batch_size_per_gpu"] = 2  # the model's own wins
    assert [c.batch_size_per_gpu for c in plan(test_config).cells] == [2]
    del test_config["models"][0]["batch_size_per_gpu"], test_config["matrix"]["batch_size_per_gpu"]
    assert [c.batch_size_per_gpu for c in plan(test_config).cells] == [test_config["batch_size_per_gpu"]]
    del test_config["batch_size_per_gpu"]
    with pytest.raises(ConfigError, match=r"models\[0\] \(tiny-llama\): no micro-batch: set batch_size_per_gpu"):
        plan(test_config)


def test_per_model_batch_override(test_config):
    test_config["models"][0]["batch_size_per_gpu"] = 1
    assert {c.batch_size_per_gpu for c in plan(test_config).cells} == {1}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda c: c.update(global_batch_size=6),
            "global_batch_size: 6 .* ddp at 2 GPU.* batch_size_per_gpu x data-parallel ranks = 2 x 2",
        ),
        (lambda c: c["models"].append(dict(c["models"][0])), r"models\[1\].name: duplicate model name"),
        (lambda c: c["models"][0].pop("architecture"), "needs an `architecture`"),
        (lambda c: c["models"][0]["architecture"].update(num_heads=3), "not divisible by num_heads 3"),
        (
            lambda c: c["matrix"].update(seq_len=[256]),
            r"matrix.seq_len\[0\]: 256 exceeds models\[0\].architecture.max_positions=128",
        ),
        (
            lambda c: c["matrix"].update(gpus=[12]),
            r"matrix.gpus\[0\]: 12 GPUs do not fill whole nodes of hardware.gpus_per_node=8",
        ),
        (lambda c: c["models"][0].update(tokenizer="builtin:bpe-100"), "vocab 100 must be in"),
    ],
)
def test_plan_refuses_what_the_schema_cannot_say(test_config, mutate, message):
    mutate(test_config)
    with pytest.raises(ConfigError, match=message):
        plan(test_config)


def test_whole_nodes_above_one_node_are_accepted(test_config):
    test_config["matrix"]["gpus"] = [16]
    test_config["global_batch_size"] = 32
    assert [c.gpus for c in plan(test_config).cells] == [16]


def test_schema_fills_defaults_and_refuses_unknown_keys(raw_test_config, repo):
    cfg = validate(raw_test_config, repo)
    assert cfg["matrix"]["precision"] == ["fp32"]
    assert cfg["optimizer"]["lr"] == 0.001
    assert cfg["hardware"]["cpu_threads_per_rank"] == 1
    raw_test_config["steps"]["mesure"] = 3
    with pytest.raises(Exception, match="mesure"):
        validate(raw_test_config, repo)


def test_job_spec_holds_the_cell_and_run_settings_only(test_config):
    cell = plan(test_config).cells[0]
    spec = job_spec(test_config, cell)
    assert spec["cell"] == cell.to_dict()
    assert set(spec) == {"run_name", "seed", "cell", "steps", "optimizer", "generation", "hardware", "options"}
    assert spec["options"] == {}  # pipeline/lora settings only reach the cells that use them
    # gpus_per_node decides placement, not results: changing it must not re-run cells
    assert "gpus_per_node" not in spec["hardware"]


def test_only_impossible_pipelines_are_pruned_with_a_reason(test_config):
    test_config["matrix"].update(strategies=["ddp", "pipeline", "zero3"], gpus=[1, 2, 4])
    test_config["global_batch_size"] = 8
    result = plan(test_config)
    pruned = {cell.id: reason for cell, reason in result.pruned}
    assert pruned == {
        "tiny-llama/pipeline/1gpu/full-fp32-bs2-seq64": "pipeline needs at least 2 stages (GPUs)",
        "tiny-llama/pipeline/4gpu/full-fp32-bs2-seq64": (
            "pipeline with 4 stages needs at least 4 decoder layers, the model has 2"
        ),
    }
    assert len(result.cells) == 3 * 3 - 2  # zero3 at 1 GPU runs: DeepSpeed accepts it


def test_pipeline_global_batch_is_micro_batches_of_one_data_shard(test_config):
    test_config["matrix"].update(strategies=["pipeline"], gpus=[2])
    test_config["global_batch_size"] = 6  # 3 micro-batches of 2; no data-parallel ranks to divide by
    (cell,) = plan(test_config).cells
    assert cell.data_parallel_size == 1 and cell.grad_accum_steps == 3 and cell.zero_stage is None


def test_strategy_options_reach_only_their_cells(test_config):
    test_config["matrix"].update(strategies=["ddp", "pipeline"], gpus=[2], method=["full", "lora"])
    test_config["options"] = {"pipeline": {"schedule": "GPipe"}, "lora": {"r": 4}}
    specs = {c.id: job_spec(test_config, c)["options"] for c in plan(test_config).cells}
    assert specs["tiny-llama/ddp/2gpu/full-fp32-bs2-seq64"] == {}
    assert specs["tiny-llama/pipeline/2gpu/lora-fp32-bs2-seq64"] == {
        "pipeline": {"schedule": "GPipe"},
        "lora": {"r": 4},
    }


def test_compile_option_reaches_only_its_strategy(raw_test_config, repo):
    raw_test_config["matrix"].update(strategies=["ddp", "fsdp"], gpus=[2])
    raw_test_config["options"] = {"fsdp": {"compile": True}}
    config = validate(raw_test_config, repo)
    specs = {c.strategy: job_spec(config, c)["options"] for c in plan(config).cells}
    assert specs == {"ddp": {}, "fsdp": {"fsdp": {"compile": True}}}  # ddp cells' specs (and results) unchanged


def test_schema_strategies_match_the_registry_and_traits(repo):
    import yaml

    from ftbench.registry import STRATEGIES

    schema = yaml.safe_load((repo / "schemas" / "config.schema.yaml").read_text())
    enum = schema["properties"]["matrix"]["properties"]["strategies"]["items"]["enum"]
    assert enum == list(STRATEGIES) and all(name == row.name for name, row in STRATEGIES.items())


def test_select_runs_a_subset_and_keeps_the_whole_plan(test_config):
    test_config["select"] = ["*/2gpu/*"]
    result = plan(test_config)
    assert [c.id for c in result.selected] == ["tiny-llama/ddp/2gpu/full-fp32-bs2-seq64"]
    assert len(result.cells) == 2  # the tables still list every cell


def test_select_matching_nothing_is_refused_with_an_example_id(test_config):
    test_config["select"] = ["llama-7b/*"]
    with pytest.raises(ConfigError, match=r"select: \['llama-7b/\*'\] match none of the 2 cells .*tiny-llama/ddp/1gpu"):
        plan(test_config)


def test_every_registered_strategy_resolves_to_an_apply_taking_its_arguments():
    import importlib
    import inspect

    from ftbench.registry import STRATEGIES

    for name, (module, kwargs) in ((n, (s.module, s.options)) for n, s in STRATEGIES.items()):
        apply = importlib.import_module(f"ftbench.train.strategies.{module}").apply
        try:
            inspect.signature(apply).bind(None, None, None, **kwargs)
        except TypeError as e:
            raise AssertionError(f"strategy {name!r}: {module}.apply does not take {kwargs}") from e


def test_a_cell_imports_only_its_own_strategy_module():
    import subprocess
    import sys

    probe = (
        "import sys; import ftbench.train.job; "
        "print(sorted(m for m in sys.modules if m.startswith('ftbench.train.strategies.')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "['ftbench.train.strategies.base']"


def test_mesh_strategies_plan_their_meshes_with_plain_ids_at_the_defaults(test_config):
    test_config["models"][0]["architecture"]["num_heads"] = 4
    test_config["matrix"].update(strategies=["tp", "fsdp_tp", "hsdp"], gpus=[4, 8])
    del test_config["global_batch_size"]  # one micro-batch per rank: the same tokens as ddp at that count
    cells = {c.id: c for c in plan(test_config).cells}
    assert list(cells) == [
        "tiny-llama/tp/4gpu/full-fp32-bs2-seq64",
        "tiny-llama/fsdp_tp/4gpu/full-fp32-bs2-seq64",
        "tiny-llama/fsdp_tp/8gpu/full-fp32-bs2-seq64",
        "tiny-llama/hsdp/4gpu/full-fp32-bs2-seq64",
        "tiny-llama/hsdp/8gpu/full-fp32-bs2-seq64",
    ]
    tp4, fsdp_tp4, fsdp_tp8 = (
        cells[f"tiny-llama/{s}/full-fp32-bs2-seq64"] for s in ("tp/4gpu", "fsdp_tp/4gpu", "fsdp_tp/8gpu")
    )
    hsdp8 = cells["tiny-llama/hsdp/8gpu/full-fp32-bs2-seq64"]
    # data-parallel degree from the mesh: what the global batch divides by
    assert (tp4.mesh.tensor_parallel, tp4.data_parallel_size, tp4.grad_accum_steps) == (4, 1, 4)
    assert (fsdp_tp4.mesh.tensor_parallel, fsdp_tp4.data_parallel_size, fsdp_tp4.grad_accum_steps) == (2, 2, 2)
    assert (fsdp_tp8.mesh.tensor_parallel, fsdp_tp8.data_parallel_size, fsdp_tp8.grad_accum_steps) == (4, 2, 4)
    assert (hsdp8.mesh.shard, hsdp8.mesh.replicate, hsdp8.data_parallel_size, hsdp8.grad_accum_steps) == (4, 2, 8, 1)
    assert all(c.tokens_per_step == 2 * c.gpus * 64 for c in cells.values())
    # tp at 8 GPUs: 4 heads do not divide over 8 ranks
    assert dict((c.id, r) for c, r in plan(test_config).pruned) == {
        "tiny-llama/tp/8gpu/full-fp32-bs2-seq64": "tp: its 4 attention heads are not divisible by the TP degree 8"
    }


def test_a_set_mesh_shape_adds_its_segment_and_impossible_shapes_are_pruned(test_config):
    test_config["models"][0]["architecture"]["num_heads"] = 4
    test_config["matrix"].update(
        strategies=["ddp", "fsdp_tp", "hsdp"], gpus=[8, 16], tp_degree=[2, 4, 3], shard_group=[8]
    )
    test_config["hardware"]["gpus_per_node"] = 4
    test_config["global_batch_size"] = 32
    result = plan(test_config)
    ids = [c.id for c in result.cells]
    assert ids == [
        "tiny-llama/ddp/8gpu/full-fp32-bs2-seq64",  # the mesh axes leave other strategies as they were
        "tiny-llama/ddp/16gpu/full-fp32-bs2-seq64",
        "tiny-llama/fsdp_tp/8gpu/full-fp32-bs2-seq64-tp-2",
        "tiny-llama/fsdp_tp/8gpu/full-fp32-bs2-seq64-tp-4",
        "tiny-llama/fsdp_tp/16gpu/full-fp32-bs2-seq64-tp-2",
        "tiny-llama/fsdp_tp/16gpu/full-fp32-bs2-seq64-tp-4",
        "tiny-llama/hsdp/8gpu/full-fp32-bs2-seq64-sg-8",
        "tiny-llama/hsdp/16gpu/full-fp32-bs2-seq64-sg-8",
    ]
    assert parse_cell_id(ids[3])["tp_degree"] == 4 and parse_cell_id(ids[-1])["shard_group"] == 8
    pruned = {c.id: r for c, r in result.pruned}
    assert pruned["tiny-llama/fsdp_tp/8gpu/full-fp32-bs2-seq64-tp-3"] == (
        "fsdp_tp: the world of 8 GPUs is not divisible by the TP degree 3"
    )
    test_config["matrix"].update(strategies=["ddp", "tp", "fsdp_tp"], tp_degree=[8])
    pruned = {c.id: r for c, r in plan(test_config).pruned}
    assert pruned["tiny-llama/tp/8gpu/full-fp32-bs2-seq64"] == "tp: a TP group of 8 GPUs is wider than a node of 4"
    assert pruned["tiny-llama/fsdp_tp/16gpu/full-fp32-bs2-seq64-tp-8"] == (
        "fsdp_tp: a TP group of 8 GPUs is wider than a node of 4"
    )


def test_tp_refuses_lora_gpt2_and_a_head_count_at_planning(test_config):
    test_config["matrix"].update(strategies=["ddp", "tp"], gpus=[2], method=["full", "lora"])
    result = plan(test_config)
    assert {c.id: r for c, r in result.pruned} == {
        "tiny-llama/tp/2gpu/lora-fp32-bs2-seq64": (
            "tp: LoRA adapters are not tensor-parallel (peft's layers take no DTensor plan)"
        )
    }
    test_config["models"][0]["source"] = "config:gpt2"
    test_config["matrix"]["method"] = ["full"]
    assert [r for _, r in plan(test_config).pruned] == [
        "tp: model type 'gpt2' has no column/row-wise tensor-parallel plan"
    ]


def test_a_downloaded_models_heads_are_checked_before_the_job_starts(tmp_path):
    from ftbench.errors import ConfigError
    from ftbench.plan.matrix import check_downloaded_model

    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": 64,
                "num_attention_heads": 8,
                "num_key_value_heads": 2,
                "num_hidden_layers": 2,
                "vocab_size": 100,
            }
        )
    )
    check_downloaded_model(Cell("m", "tp", 2, "full", "fp32", 1, 32, 1), config)
    with pytest.raises(ConfigError, match=r"cell m/tp/4gpu/.*2 KV heads are not divisible by the TP degree 4"):
        check_downloaded_model(Cell("m", "tp", 4, "full", "fp32", 1, 32, 1), config)


def test_a_strategy_that_does_not_run_a_precision_prunes_it_with_the_reason(test_config):
    test_config["matrix"].update(strategies=["ddp", "zero2", "pipeline", "tp"], gpus=[2], precision=["fp16"])
    test_config["hardware"]["device"] = "cpu"
    pruned = {c.id: r for c, r in plan(test_config).pruned}
    assert [c.id for c in plan(test_config).cells] == ["tiny-llama/ddp/2gpu/full-fp16-bs2-seq64"]
    assert pruned == {
        "tiny-llama/zero2/2gpu/full-fp16-bs2-seq64": (
            "zero2: DeepSpeed's CPU accelerator has no fp16 (run it on GPUs, or bf16 here)"
        ),
        "tiny-llama/pipeline/2gpu/full-fp16-bs2-seq64": "pipeline does not run fp16 (it runs fp32, bf16)",
        "tiny-llama/tp/2gpu/full-fp16-bs2-seq64": "tp does not run fp16 (it runs fp32, bf16)",
    }
    test_config["hardware"]["device"] = "cuda"  # DeepSpeed's fp16 mode on GPUs
    assert "tiny-llama/zero2/2gpu/full-fp16-bs2-seq64" in [c.id for c in plan(test_config).cells]


def test_fp8_is_refused_at_planning_on_a_cpu_device_and_pruned_where_not_wired(test_config):
    test_config["matrix"].update(strategies=["ddp", "fsdp", "zero3"], gpus=[2], precision=["bf16", "fp8"])
    test_config["hardware"]["device"] = "cpu"
    with pytest.raises(ConfigError, match=r"matrix\.precision: fp8 needs a GPU with float8 matmuls"):
        plan(test_config)
    test_config["hardware"]["device"] = "cuda"
    result = plan(test_config)
    assert "tiny-llama/fsdp/2gpu/full-fp8-bs2-seq64" in [c.id for c in result.cells]
    assert {c.id: r for c, r in result.pruned} == {
        "tiny-llama/zero3/2gpu/full-fp8-bs2-seq64": "zero3 does not run fp8 (it runs fp32, bf16, fp16)"
    }


def test_an_fp8_job_on_a_cpu_rank_is_refused_naming_the_cell():
    import torch

    from ftbench.train import float8

    cell = Cell("m", "ddp", 1, "full", "fp8", 1, 32, 1)
    with pytest.raises(ConfigError, match=r"cell m/ddp/1gpu/full-fp8-bs1-seq32: fp8 needs a GPU .* runs on cpu"):
        float8.check(cell, torch.device("cpu"))
    float8.check(Cell("m", "ddp", 1, "full", "bf16", 1, 32, 1), torch.device("cpu"))  # other precisions pass


def test_a_tp_degree_above_the_world_or_across_nodes_is_pruned_and_still_estimated(test_config):
    from ftbench.plan.estimate import cell_estimates

    test_config["models"][0]["architecture"].update(hidden_size=48, num_heads=24)
    test_config["matrix"].update(strategies=["ddp", "fsdp_tp"], gpus=[4, 24], tp_degree=[6, 8])
    test_config["hardware"]["gpus_per_node"] = 8
    test_config["global_batch_size"] = 48
    result = plan(test_config)
    pruned = {c.id: r for c, r in result.pruned}
    assert pruned["tiny-llama/fsdp_tp/4gpu/full-fp32-bs2-seq64-tp-8"] == (
        "fsdp_tp: the world of 4 GPUs is not divisible by the TP degree 8"
    )
    # 6 divides 24 but not a node of 8: ranks 6-11 would be one group on two nodes
    assert pruned["tiny-llama/fsdp_tp/24gpu/full-fp32-bs2-seq64-tp-6"] == (
        "fsdp_tp: TP groups of 6 GPUs do not divide a node of 8 (one would span two)"
    )
    assert "tiny-llama/fsdp_tp/24gpu/full-fp32-bs2-seq64-tp-8" in [c.id for c in result.cells]
    # the summary estimates pruned cells too: an impossible mesh still gives a finite figure
    assert all(e.gb > 0 for e in cell_estimates(test_config, result.every_cell, "cuda").values())
