"""The host memory a Slurm cell asks for: from the model's shape and what its strategy holds on the host."""

import json
from pathlib import Path

import helpers
import pytest

from ftbench.cell import Cell
from ftbench.data import sources
from ftbench.plan import estimate, host_memory, model_shape
from ftbench.plan.builds import model_dir
from ftbench.plan.model_shape import Shape

LLAMA_120M = Shape(hidden=768, layers=16, intermediate=2048, vocab=4096, heads=12, kv_heads=12)


def cell(strategy, gpus=4, method="full") -> Cell:
    return helpers.cell(strategy, gpus, method, bs=1)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_the_shape_counts_a_prepared_models_parameters(tmp_path, family):
    from transformers import AutoModelForCausalLM

    sources.prepare_dataset("builtin:customer_support", tmp_path / "data", num_rows=200, seed=0)
    sources.train_tokenizer("builtin:bpe-400", tmp_path / "data", "{instruction}\n{response}", tmp_path / "tok")
    arch = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 64}
    model = {"name": "m", "source": f"config:{family}", "architecture": arch}
    sources.prepare_model(model, tmp_path / "tok", tmp_path / "model", seed=1)
    shape = Shape.from_config_json(json.loads((tmp_path / "model" / "config.json").read_text()))
    net = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert shape.params == sum(p.numel() for p in net.parameters())


def test_the_120m_benchmark_model_and_its_lora_adapters():
    # the counts tests/e2e/test_sharded_loading.py measures on the real model
    assert LLAMA_120M.params == 119_563_008 and LLAMA_120M.lora_params(8) == 786_432


def test_on_cpu_sharded_strategies_ask_less_than_a_replica_and_more_ranks_less_each():
    per_rank = {s: host_memory.per_rank_gb(LLAMA_120M, cell(s), "cpu", {}) for s in ("ddp", "fsdp", "zero3")}
    assert per_rank["fsdp"] < per_rank["ddp"] and per_rank["zero3"] < per_rank["ddp"]
    assert host_memory.per_rank_gb(LLAMA_120M, cell("fsdp", 8), "cpu", {}) < per_rank["fsdp"]


def test_the_estimate_covers_the_measured_training_peaks():
    """benchmarks/memory.py, 4 ranks, AMD EPYC (fp32, seq 64): VmHWM training peaks per rank."""
    measured = {"ddp": 2.28, "fsdp": 1.14, "zero3": 1.81, "pipeline": 0.94}
    for strategy, peak in measured.items():
        assert peak <= host_memory.per_rank_gb(LLAMA_120M, cell(strategy), "cpu", {}) <= 2.5 * peak


def test_activation_checkpointing_keeps_each_layers_input_and_one_layer_whole():
    long = Cell("m", "fsdp", 4, "full", "fp32", 8, 1024, 32)
    full = estimate.activation_bytes(LLAMA_120M, long)
    checkpointed = estimate.activation_bytes(
        LLAMA_120M, Cell(**{**long.all_fields(), "activation_checkpointing": "full"})
    )
    logits = 3 * 8 * 1024 * 4096 * 4
    assert checkpointed - logits == 16 * 8 * 1024 * 768 * 4 + (full - logits) // 16


def test_on_a_gpu_the_host_holds_the_runtime_and_what_is_offloaded():
    plain = host_memory.per_rank_gb(LLAMA_120M, cell("zero3"), "cuda", {})
    offload = host_memory.per_rank_gb(LLAMA_120M, cell("zero3_offload"), "cuda", {})
    assert plain == pytest.approx(host_memory.SLACK * host_memory.RUNTIME_GB["cuda"], rel=0.02)
    assert offload > plain


def test_the_default_cpu_matrix_asks_a_few_gb_not_32(test_config):
    config = {**test_config, "hardware": {**test_config["hardware"], "device": "cpu"}}
    config["hardware"].pop("host_memory_per_rank_gb", None)
    model = config["models"][0]
    shape = model_shape.model_shape(config, model["name"], resources="/nonexistent")
    per_rank = host_memory.cell_request_gb(config, cell("ddp", 2), shape)
    assert per_rank < 2


def test_an_explicit_host_memory_per_rank_wins(test_config):
    config = {**test_config, "hardware": {**test_config["hardware"], "host_memory_per_rank_gb": 7}}
    assert host_memory.cell_request_gb(config, cell("ddp"), LLAMA_120M) == 7


def test_a_hub_model_before_its_download_has_no_shape_yet(test_config, tmp_path):
    config = {**test_config, "models": [{"name": "hubm", "source": "hf:acme/tiny-llama"}]}
    assert model_shape.model_shape(config, "hubm", resources=str(tmp_path)) is None
    assert host_memory.cell_request_gb(config, cell("ddp"), None) is None
    built = Path(model_dir(config, "hubm", tmp_path))
    built.mkdir(parents=True)
    (built / "config.json").write_text(
        json.dumps(
            {
                "hidden_size": 768,
                "num_hidden_layers": 16,
                "intermediate_size": 2048,
                "vocab_size": 4096,
                "num_attention_heads": 12,
                "num_key_value_heads": 12,
                "tie_word_embeddings": False,
            }
        )
    )
    assert model_shape.model_shape(config, "hubm", resources=str(tmp_path)) == LLAMA_120M


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_lora_adapters_counted_as_peft_places_them(family):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from ftbench.train import methods

    if family == "gpt2":
        cfg = GPT2Config(n_embd=32, n_layer=2, n_head=2, n_inner=64, n_positions=64, vocab_size=400)
        net = GPT2LMHeadModel(cfg)
    else:
        cfg = LlamaConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64
        )
        net = LlamaForCausalLM(cfg)
    shape = Shape.from_config_json(cfg.to_dict())
    assert shape.params == sum(p.numel() for p in net.parameters())
    lora = methods.apply(net, "lora", {"lora": {"r": 4}})
    assert shape.lora_params(4) == sum(p.numel() for p in lora.parameters() if p.requires_grad)
