"""What each rule's job asks of the scheduler (ftbench.launch.resources), as the plain values the rules get:
one value where every cell has the same, else one per GPU count or model."""

import pytest
from helpers import cell

from ftbench.launch import resources
from ftbench.launch.resources import PER_CELL, ByWildcard
from ftbench.plan.matrix import plan
from ftbench.plan.model_shape import Shape


@pytest.fixture
def gpu_config(test_config):
    test_config["hardware"].update(device="cuda", gpus_per_node=8, cpu_threads_per_rank=4)
    test_config["limits"]["cell_timeout_s"] = 1200
    test_config["models"].append({**test_config["models"][0], "name": "slow", "cell_timeout_s": 3600})
    return test_config


def test_vary_gives_one_value_where_every_key_has_it_else_one_per_wildcard_value():
    assert resources.vary("gpus", {1: 7, 2: 7}) == 7
    varied = resources.vary("gpus", {1: 7, 16: 9})
    assert varied == ByWildcard("gpus", {"1": 7, "16": 9}) and varied.of({"gpus": "16"}) == 9


def test_a_cells_job_asks_nodes_gpus_and_cpus_per_gpu_count_and_time_per_model(gpu_config):
    cells = [cell(gpus=8), cell(gpus=16), cell(gpus=16, model="slow")]
    res = resources.train_cell(gpu_config, cells)
    assert res["nodes"] == ByWildcard("gpus", {"8": 1, "16": 2})
    assert res["gres"] == "gpu:8" and res["cpus_per_task"] == 32 and res["tasks_per_gpu"] == 0
    assert res["mpi"] == ByWildcard("gpus", {"8": None, "16": "srun"})  # multi-node: the launcher's own srun
    assert res["runtime"] == ByWildcard("model", {"tiny-llama": 30, "slow": 70})  # the limit + 10 min
    assert res["cell_timeout_s"] == ByWildcard("model", {"tiny-llama": 1200, "slow": 3600})
    assert res["mem_mb"] == PER_CELL and res["train_jobs"] == 1 and "slurm_partition" not in res
    assert resources.train_threads(gpu_config, cells) == ByWildcard("gpus", {"8": 32, "16": 64})


def test_a_fixed_host_memory_is_per_gpu_count_and_a_cpu_partition_takes_cpu_jobs(test_config):
    test_config["hardware"].update(device="cpu", host_memory_per_rank_gb=2, cpu_partition="cpu")
    res = resources.train_cell(test_config, plan(test_config).cells)
    assert res["mem_mb"] == ByWildcard("gpus", {"1": 2048, "2": 4096})  # 2 GB per rank on the job's node
    assert res["slurm_partition"] == "cpu"  # the cells run on the CPU: a CPU partition takes them
    assert resources.calibration(test_config)["slurm_partition"] == "cpu"
    test_config["hardware"]["device"] = "cuda"
    assert "slurm_partition" not in resources.train_cell(test_config, plan(test_config).cells)
    assert resources.cpu_partition(test_config) == {"slurm_partition": "cpu"}  # jobs that need no GPU


def test_a_cells_memory_is_known_once_its_models_shape_is(gpu_config):
    shape = Shape(hidden=64, layers=2, intermediate=128, vocab=512, heads=2, kv_heads=2, tied=False)
    assert resources.cell_mem_mb(gpu_config, cell(gpus=8), None) is None
    assert resources.cell_mem_mb(gpu_config, cell(gpus=8), shape) > 0
