"""The memory estimate (ftbench.plan.estimate) held against torch's own memory tracking on fake tensors,
DeepSpeed's and accelerate's size helpers, and what planning and the preview do with it. The measured CPU
training peaks it is held to are benchmarks/memory.py's (docs/memory.md "The estimate")."""

import json
import time
from pathlib import Path

import helpers
import pytest

from ftbench.cell import Cell
from ftbench.errors import ConfigError
from ftbench.plan import estimate as est
from ftbench.plan.matrix import plan
from ftbench.plan.model_shape import Shape, model_shape
from ftbench.precision import precision_of

SHAPES = Path(__file__).parents[2] / "configs" / "shapes"
SMALL = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 688,
    "vocab_size": 4096,
    "max_position_embeddings": 128,
    "tie_word_embeddings": False,
}
LLAMA_70B = Shape.from_config_json(json.loads((SHAPES / "llama-2-70b.json").read_text()))


def cell(strategy="ddp", gpus=1, method="full", precision="fp32", bs=8, seq=64, checkpointing="none") -> Cell:
    return helpers.cell(strategy, gpus, method, precision, bs, seq, activation_checkpointing=checkpointing)


@pytest.mark.parametrize(
    ("precision", "checkpointing", "bs"),
    [("fp32", "none", 8), ("fp32", "full", 8), ("bf16", "none", 8), ("fp32", "none", 1)],
)
def test_a_replica_is_what_torchs_memory_tracker_counts_on_fake_tensors(precision, checkpointing, bs):
    """One replica's training step under FakeTensorMode (no memory is allocated), tracked by torch's
    MemTracker: weights, gradients (kept between steps, as DDP's buckets keep them), fused AdamW's state and
    what autograd saves, at the peak of the second step. The estimate without the runtime is within 20 %."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SMALL)
    with FakeTensorMode():
        model = LlamaForCausalLM(config)
        if checkpointing == "full":
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        ids = torch.randint(0, SMALL["vocab_size"], (bs, 64))
        tracker = MemTracker()
        tracker.track_external(model, optimizer)
        with tracker:
            for step in range(2):
                if step:
                    tracker.reset_mod_stats()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=False)
        peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
    predicted = est.estimate(
        Shape.from_config_json(SMALL), cell(precision=precision, bs=bs, checkpointing=checkpointing), "cpu", {}
    )
    assert predicted.total - predicted.runtime == pytest.approx(peak, rel=0.2)


def test_the_parameter_bytes_are_accelerates_module_sizes():
    """(accelerate counts a tied head twice; tests/unit/test_host_memory.py counts GPT-2's on the real model)"""
    from accelerate import init_empty_weights
    from accelerate.utils import compute_module_sizes
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**{**SMALL, "num_key_value_heads": 2})  # grouped-query attention: narrower k and v
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    shape = Shape.from_config_json(config.to_dict())
    buffers = compute_module_sizes(model, buffers_only=True)[""]  # the rotary frequencies
    assert compute_module_sizes(model)[""] - buffers == shape.params * est.FP32
    predicted = est.estimate(shape, cell(), "cuda", {})
    fp32 = precision_of("fp32")
    assert predicted.parameters == shape.params * fp32.master_bytes
    assert predicted.optimizer == shape.params * fp32.optimizer_bytes


def model_states(predicted: est.MemoryEstimate) -> float:
    return predicted.parameters + predicted.gradients + predicted.optimizer


@pytest.mark.parametrize(("strategy", "precision"), [("zero2", "fp32"), ("zero2", "bf16"), ("zero3", "bf16")])
def test_zero_model_states_agree_with_deepspeeds_own_estimate(strategy, precision):
    """DeepSpeed's estimate_zero{2,3}_model_states_mem_needs (its mixed-precision accounting: 16-bit weights
    and gradients, fp32 master, gradient partition and AdamW) against the GPU side of the estimate, 8 GPUs."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    shape = Shape.from_config_json(json.loads((SHAPES / "llama-2-7b.json").read_text()))
    predicted = model_states(est.estimate(shape, cell(strategy, 8, precision=precision), "cuda", {}))
    if strategy == "zero2":
        _, theirs = estimate_zero2_model_states_mem_needs(shape.params, num_gpus_per_node=8, cpu_offload=False)
    else:
        _, theirs, _ = estimate_zero3_model_states_mem_needs(
            shape.params, shape.embedding_params, num_gpus_per_node=8, cpu_offload=False
        )
    # fp32 mode holds 4-byte weights where DeepSpeed's accounting has 2-byte ones (2 bytes per parameter more)
    expected = theirs + (2 * shape.params if precision == "fp32" else 0)
    assert predicted == pytest.approx(expected, rel=0.2)


def test_each_sharded_rank_holds_about_the_model_divided_by_the_world():
    ddp = est.estimate(LLAMA_70B, cell("ddp", 8, precision="bf16", bs=1, seq=4096, checkpointing="full"), "cuda", {})
    for strategy in ("fsdp", "zero3"):
        sharded = est.estimate(LLAMA_70B, cell(strategy, 8, precision="bf16", bs=1, seq=4096), "cuda", {})
        assert model_states(sharded) < model_states(ddp) / 6


def test_a_70b_fsdp_lora_cell_on_8_80gb_gpus_fits_with_checkpointing_only():
    t0 = time.perf_counter()
    lora = {"lora": {"r": 16}}
    kept = est.estimate(LLAMA_70B, cell("fsdp", 8, "lora", "bf16", 1, 4096, "full"), "cuda", lora)
    whole = est.estimate(LLAMA_70B, cell("fsdp", 8, "lora", "bf16", 1, 4096), "cuda", lora)
    assert time.perf_counter() - t0 < 1
    # fp32 shards of 69B parameters over 8 ranks (34 GB), two gathered bf16 layers, every layer's input
    assert 34 < kept.gb < 80 < whole.gb
    assert kept.optimizer < 0.01 * kept.parameters  # only the adapters are trained


def test_prune_predicted_oom_leaves_out_what_does_not_fit_with_the_estimate_in_its_reason(test_config, tmp_path):
    config = json.loads(json.dumps(test_config))
    shape = f"local:{SHAPES / 'llama-2-70b.json'}"
    config["models"] = [{"name": "l70", "source": "hf:meta-llama/Llama-2-70b-hf", "shape": shape}]
    config["matrix"].update(strategies=["ddp", "fsdp"], gpus=[8], seq_len=[4096], precision=["bf16"], method=["lora"])
    config["matrix"].update(activation_checkpointing=["full"])
    config["batch_size_per_gpu"], config["global_batch_size"] = 1, None
    config["hardware"].update(device="cuda", gpu_memory_gb=80)
    config["limits"]["prune_predicted_oom"] = True
    result = plan(config)
    assert [c.strategy for c in result.cells] == ["fsdp"]
    ((pruned, reason),) = result.pruned
    assert pruned.strategy == "ddp" and "GB per rank > 80 GB of the device (params" in reason
    config["limits"]["prune_predicted_oom"] = False
    assert len(plan(config).cells) == 2  # it informs; only the option decides
    config["limits"]["prune_predicted_oom"] = True
    del config["hardware"]["gpu_memory_gb"]
    with pytest.raises(
        ConfigError, match=r"limits.prune_predicted_oom: needs the device's memory: hardware\.gpu_memory_gb"
    ):
        plan(config)


def test_a_hub_model_has_a_shape_before_download_only_through_its_shape_key(test_config, tmp_path):
    config = {**test_config, "models": [{"name": "l70", "source": "hf:meta-llama/Llama-2-70b-hf"}]}
    assert model_shape(config, "l70", resources=str(tmp_path)) is None
    config["models"][0]["shape"] = f"local:{SHAPES / 'llama-2-70b.json'}"
    assert model_shape(config, "l70", resources=str(tmp_path)) == LLAMA_70B
    config["models"][0]["shape"] = f"local:{tmp_path / 'missing.json'}"
    with pytest.raises(ConfigError, match=r"models\[l70\].shape: .*missing.json is not a config.json file"):
        model_shape(config, "l70", resources=str(tmp_path))


def test_auto_is_estimated_for_the_device_jobs_will_have(monkeypatch):
    assert est.estimate_device({"device": "cpu", "gpu_gres": "gpu"}) == "cpu"
    assert est.estimate_device({"device": "auto", "gpu_gres": "gpu:a100"}) == "cuda"
    monkeypatch.setattr(est.os.path, "exists", lambda path: False)
    assert est.estimate_device({"device": "auto", "gpu_gres": None}) == "cpu"


def test_mesh_strategies_hold_their_mesh_share_of_the_model():
    seven = Shape.from_config_json(json.loads((SHAPES / "llama-2-7b.json").read_text()))

    def states(strategy, gpus, **mesh):
        c = Cell("m", strategy, gpus, "full", "bf16", 1, 4096, gpus, **mesh)
        return est.estimate(seven, c, "cuda", {})

    # HSDP's shards are FSDP's over its shard group; sharded states shrink with the group, not the world
    hsdp, fsdp8 = states("hsdp", 16, shard_group=8), states("fsdp", 8)
    assert model_states(hsdp) == model_states(fsdp8) and hsdp.activations == fsdp8.activations
    # a TP rank holds 1/tp of every layer's linears, the embedding and head whole
    tp, ddp = states("tp", 8), states("ddp", 1)
    split = seven.layers * (seven.layer_params - seven.norm_params)
    assert seven.tp_params(8) == seven.params - split + split // 8
    assert tp.parameters == seven.tp_params(8) * (4 + 2)  # fp32 weights and autocast's bf16 copies
    assert model_states(ddp) / 8 < model_states(tp) < model_states(ddp) / 5  # embedding and head stay whole
    assert tp.activations < ddp.activations
    # FSDP over TP: the TP rank's states, sharded over the data-parallel ranks (plus gathered layers)
    fsdp_tp = states("fsdp_tp", 16, tp_degree=8)
    assert fsdp_tp.optimizer == pytest.approx(tp.optimizer / 2)
    assert fsdp_tp.activations == tp.activations


@pytest.mark.parametrize("name", ["falcon-7b", "gpt2", "llama-2-7b"])
def test_the_shipped_shapes_count_the_parameters_transformers_builds(name):
    """configs/shapes/ files, built as transformers builds them (on the meta device): the shape's count is
    the model's (a tied head once), Falcon-7B's 6.92B and GPT-2's 124M among them."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(SHAPES / f"{name}.json")
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # init_empty_weights' fresh meta parameters untie a tied head
    assert Shape.from_config_json(json.loads((SHAPES / f"{name}.json").read_text())).params == sum(
        p.numel() for p in model.parameters()
    )
