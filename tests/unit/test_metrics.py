import math

import pytest
import torch

from ftbench import metrics


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


def test_peak_memory_reads_this_process_rss():
    mem = metrics.peak_memory(torch.device("cpu"))
    assert 0.01 < mem["cpu_peak_rss_gb"] < 64


def test_clock_records_one_time_per_lap():
    clock = metrics.StepClock(torch.device("cpu"))
    clock.start()
    clock.lap()
    clock.lap()
    assert len(clock.step_times) == 2 and all(t >= 0 for t in clock.step_times)
