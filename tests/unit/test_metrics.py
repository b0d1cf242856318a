import math

import pytest
import torch

from ftbench.train import metrics


def test_throughput_counts_each_token_once_over_measured_steps():
    out = metrics.throughput(tokens_per_step=1024, samples_per_step=8, step_times=[0.5, 0.25, 0.25, 1.0])
    assert out["train_time_s"] == pytest.approx(2.0)
    assert out["train_tokens_per_s"] == pytest.approx(4 * 1024 / 2.0)
    assert out["train_samples_per_s"] == pytest.approx(16.0)
    assert out["step_time_p50_s"] == pytest.approx(0.375)
    assert 0.5 < out["step_time_p95_s"] <= 1.0


def test_memory_is_the_max_over_ranks_and_prefers_gpu_reserved():
    cpu = metrics.memory_summary([{"cpu_peak_rss_gb": 1.0}, {"cpu_peak_rss_gb": 3.0}])
    assert cpu["peak_memory_gb"] == 3.0 and cpu["peak_memory_kind"] == "cpu_rss"
    gpu = metrics.memory_summary(
        [
            {"cpu_peak_rss_gb": 5.0, "gpu_peak_allocated_gb": 2.0, "gpu_peak_reserved_gb": 2.5},
            {"cpu_peak_rss_gb": 4.0, "gpu_peak_allocated_gb": 3.0, "gpu_peak_reserved_gb": 3.5},
        ]
    )
    assert gpu["peak_memory_gb"] == 3.5 and gpu["gpu_peak_allocated_gb"] == 3.0
    assert gpu["peak_memory_kind"] == "gpu_reserved" and len(gpu["memory_per_rank"]) == 2


def test_perplexity_is_exp_of_loss():
    assert metrics.perplexity(math.log(42.0)) == pytest.approx(42.0)
    assert metrics.perplexity(1e4) == math.inf
    assert math.isnan(metrics.perplexity(math.nan))  # a diverged loss is not an infinitely bad model


def test_divergence_note_names_the_first_non_finite_step():
    assert metrics.divergence_note([9.4, 8.2, 7.1]) is None
    assert metrics.divergence_note([9.4, 8.2, math.nan, math.inf]) == "loss diverged: not finite from step 2 of 4"


def test_peak_memory_reads_this_process_rss():
    mem = metrics.peak_memory(torch.device("cpu"))
    assert 0.01 < mem["cpu_peak_rss_gb"] < 64


def test_clock_records_one_time_per_lap():
    clock = metrics.StepClock(torch.device("cpu"))
    clock.start()
    clock.lap()
    clock.lap()
    assert len(clock.step_times) == 2 and all(t >= 0 for t in clock.step_times)


def test_energy_comes_from_the_gpus_counter_over_the_timed_steps_and_is_never_guessed():
    cpu = torch.device("cpu")
    assert metrics.nvml_energy_reader(cpu) is None
    clock = metrics.StepClock(cpu)
    clock.start()
    clock.lap()
    assert clock.energy_j() is None and metrics.energy(None, 100) == {}
    readings = iter([1000.0, 1030.0])  # the counter's joules at the first timed step and after the last
    clock._energy = lambda: next(readings)
    clock.start()
    clock.lap()
    clock.lap()
    assert clock.energy_j() == 30.0
    assert metrics.energy(30.0, 600) == {"train_energy_j": 30.0, "train_energy_j_per_token": 0.05}


def tiny_llama(tie=False):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        vocab_size=100,
        tie_word_embeddings=tie,
    )
    return LlamaForCausalLM(cfg)


def test_flops_per_token_is_6n_plus_attention_for_full_fine_tuning():
    model = tiny_llama()
    n = sum(p.numel() for p in model.parameters()) - 100 * 16  # input embedding excluded, LM head counted
    out = metrics.flops_per_token(model, seq_len=8)
    assert out["matmul_params"] == n == out["matmul_params_trainable"]
    assert out["flops_per_token"] == 6 * n + 12 * 2 * 16 * 8
    assert out["hardware_flops_per_token"] == out["flops_per_token"]  # nothing recomputed


def test_hardware_flops_add_one_forward_of_every_decoder_layer_when_recomputed():
    model = tiny_llama()
    layers = sum(p.numel() for p in model.model.layers.parameters())
    out = metrics.flops_per_token(model, seq_len=8, recompute=True)
    # each layer's weights 2 FLOPs/token again, and attention's forward (a third of its 12·L·d·S)
    assert out["hardware_flops_per_token"] - out["flops_per_token"] == 2 * layers + 4 * 2 * 16 * 8
    assert out["flops_per_token"] == metrics.flops_per_token(model, seq_len=8)["flops_per_token"]


def test_flops_per_token_charges_frozen_weights_forward_and_input_grad():
    from ftbench.train import methods

    model = methods.apply(tiny_llama(), "lora", {"lora": {"r": 2}})
    out = metrics.flops_per_token(model, seq_len=8)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert out["matmul_params_trainable"] == trainable > 0
    assert out["flops_per_token"] == 4 * out["matmul_params"] + 2 * trainable + 12 * 2 * 16 * 8


def test_tied_lm_head_is_counted_once():
    model = tiny_llama(tie=True)
    assert metrics.flops_per_token(model, 8)["matmul_params"] == sum(p.numel() for p in model.parameters())


def test_datasheet_peaks_match_gpu_names_and_precisions():
    from ftbench.peaks import datasheet_peak

    assert datasheet_peak("NVIDIA H100 80GB HBM3", "bf16")[0] == 989e12
    assert datasheet_peak("NVIDIA H100 PCIe", "bf16")[0] == 756e12
    assert datasheet_peak("NVIDIA A100-SXM4-80GB", "fp32")[0] == 19.5e12
    assert datasheet_peak("Tesla V100-SXM2-32GB", "bf16") == (
        None,
        "https://www.nvidia.com/en-us/data-center/v100/ (SXM2; no bf16)",
    )
    assert datasheet_peak("Intel(R) Xeon(R)", "fp32") == (None, None)
    assert datasheet_peak(None, "fp32") == (None, None)


def test_calibration_times_square_matmuls_per_precision(tmp_path):
    from ftbench.train import calibrate

    out = calibrate.calibrate("cpu", 1, tmp_path / "c.json", size=128, reps=10)
    assert set(out["matmul"]) == {"fp32", "bf16"} and out["cpu_threads"] == 1
    fp32 = out["matmul"]["fp32"]
    assert len(fp32["times_s"]) == 10 and fp32["flops_per_s"] == pytest.approx(2 * 128**3 / fp32["median_s"])


def test_startup_is_launch_to_first_step_split_into_phases():
    marks = {
        "main": 11.0,
        "transformers": 12.5,
        "process_group": 12.6,
        "model_load": 13.0,
        "strategy_setup": 15.0,
        "first_step": 15.25,
    }
    got = metrics.startup(marks, "10.0")
    assert got["startup_s"] == 5.25
    assert got["startup_phases_s"] == {
        "main": 1.0,
        "transformers": 1.5,
        "process_group": 0.1,
        "model_load": 0.4,
        "strategy_setup": 2.0,
        "first_step": 0.25,
    }
    assert metrics.startup(marks, None) == {} and metrics.startup({"main": 1.0}, "0") == {}
