"""Slurm geometry, resources, the multi-node torchrun line and what a killed job becomes (no cluster needed;
tests/e2e/test_slurm.py runs all of it on a real one)."""

import json
import sys

import pytest
from helpers import record

from ftbench.errors import ConfigError
from ftbench.launch import launcher, slurm
from ftbench.report import aggregate

HW = {"device": "cuda", "gpus_per_node": 8, "cpu_threads_per_rank": 4, "host_memory_per_rank_gb": 16}


@pytest.mark.parametrize(("gpus", "nodes", "per_node"), [(1, 1, 1), (4, 1, 4), (8, 1, 8), (16, 2, 8), (64, 8, 8)])
def test_geometry_fills_one_node_then_whole_nodes(gpus, nodes, per_node):
    assert slurm.geometry(gpus, 8) == slurm.Geometry(nodes, per_node)


@pytest.mark.parametrize("gpus", [12, 20, 9])
def test_geometry_refuses_part_of_a_node_above_one(gpus):
    with pytest.raises(ConfigError, match=rf"matrix.gpus: {gpus} GPUs do not fill whole nodes.*gpus_per_node=8"):
        slurm.geometry(gpus, 8)


def test_one_node_job_asks_gpus_per_node_and_no_task_binding():
    res = slurm.job_resources(HW, 4, 70)
    assert res == {
        "nodes": 1,
        "gres": "gpu:4",
        "cpus_per_task": 16,
        "mem_mb": 4 * 16 * 1024,
        "runtime": 70,
        "tasks_per_gpu": 0,
        "mpi": None,  # None: unset, the plugin wraps the rule in its own one-task step
        "tasks": None,
    }


def test_sixteen_gpus_on_eight_gpu_nodes_is_two_nodes_one_task_each():
    res = slurm.job_resources({**HW, "gpu_gres": "gpu:a100"}, 16, 130)
    assert (res["nodes"], res["tasks"], res["mpi"], res["gres"]) == (2, 2, "srun", "gpu:a100:8")
    assert res["cpus_per_task"] == 32 and res["mem_mb"] == 8 * 16 * 1024  # per node, not per job


@pytest.mark.parametrize(
    ("device", "gres", "expected"),
    [("cpu", None, None), ("auto", None, "gpu:2"), ("cpu", "gpu", "gpu:2"), ("cuda", "", None)],
)
def test_gpus_are_asked_unless_the_device_is_the_cpu(device, gres, expected):
    assert slurm.job_resources({**HW, "device": device, "gpu_gres": gres}, 2, 10)["gres"] == expected


def test_runtime_is_the_cell_limit_plus_start_up_slack():
    assert slurm.runtime_min(3600) == 70
    assert slurm.runtime_min(61) == 12
    assert slurm.runtime_min(0) == 7 * 24 * 60


def test_single_node_is_standalone_torchrun():
    assert slurm.torchrun_command("py", 4, 1, {}) == [
        "py",
        "-m",
        "ftbench.launch.agent",
        "--standalone",
        "--nproc-per-node=4",
    ]


def test_multi_node_is_one_torchrun_per_node_with_rendezvous_on_the_first(monkeypatch):
    monkeypatch.setattr(slurm.shutil, "which", lambda name: None)  # no scontrol: the nodelist's prefix
    env = {"SLURM_JOB_ID": "123456", "SLURM_JOB_NODELIST": "gpu-a,gpu-b"}
    cmd = slurm.torchrun_command("py", 16, 2, env, threads_per_rank=4)
    assert cmd[:5] == ["srun", "--kill-on-bad-exit=1", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1"]
    # the node's task gets its 8 ranks x 4 threads: srun does not inherit the job's --cpus-per-task
    assert cmd[5] == "--cpus-per-task=32"
    assert cmd[6:9] == ["py", "-m", "ftbench.launch.slurm"]
    assert "--nproc-per-node=8" in cmd and "--nnodes=2" in cmd and "--rdzv-id=123456" in cmd
    port = 20000 + 123456 % 10000
    assert f"--rdzv-endpoint=gpu-a:{port}" in cmd


def test_multi_node_outside_slurm_is_refused_with_the_way_out():
    with pytest.raises(RuntimeError, match="spans 2 nodes: run it under Slurm"):
        slurm.torchrun_command("py", 16, 2, {})


def test_node_torchrun_tells_torchrun_which_node_hosts_the_store(monkeypatch):
    seen = {}
    monkeypatch.setattr(slurm.os, "execv", lambda path, argv: seen.update(argv=argv))
    for node_id, host in (("0", "1"), ("1", "0")):
        monkeypatch.setenv("SLURM_NODEID", node_id)
        monkeypatch.setenv("SLURMD_NODENAME", f"n{node_id}")
        slurm.node_torchrun(["--nnodes=2", "-m", "x"])
        assert seen["argv"] == [
            sys.executable,
            "-m",
            "ftbench.launch.agent",
            f"--rdzv-conf=is_host={host}",
            f"--local-addr=n{node_id}",
            "--nnodes=2",
            "-m",
            "x",
        ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1-02:03:04", 93784), ("02:03:04", 7384), ("03:04", 184), ("UNLIMITED", None), ("NOT_SET", None), ("", None)],
)
def test_squeue_time_left(text, seconds):
    assert slurm.parse_time_left(text) == seconds


@pytest.mark.parametrize(
    ("timeout_s", "slurm_left", "expected"),
    [
        (3600, None, (3600, "cell")),  # outside Slurm
        (3600, 7200, (3600, "cell")),  # the cell's own limit comes first
        (3600, 1000, (1000 - 90 - 10, "slurm")),  # the job ends first: stop early enough to record it
        (0, 1000, (900, "slurm")),  # no cell limit
        (0, None, (0, "cell")),
    ],
)
def test_deadline_is_whichever_limit_comes_first(timeout_s, slurm_left, expected):
    assert launcher.deadline(timeout_s, slurm_left) == expected


@pytest.mark.parametrize(
    ("state", "status", "words"),
    [
        ("TIMEOUT", "timeout", "time limit"),
        ("OUT_OF_MEMORY", "failed", "host memory"),
        ("NODE_FAIL", "failed", "retries"),
        ("RUNNING", "pending", None),
        (None, "pending", None),
    ],
)
def test_a_job_slurm_ended_is_a_row_with_slurms_state(tmp_path, monkeypatch, state, status, words):
    monkeypatch.setattr(slurm, "job_state", lambda job_id: state if job_id == "77" else None)
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"slurm": {"job_id": "77"}}))
    row = aggregate.slurm_row(record("m/ddp/2gpu/full-fp32-bs2-seq64"), job_file)
    assert row["status"] == status
    assert (words in row["note"]) if words else "note" not in row


def test_a_cell_without_a_job_record_is_pending(tmp_path):
    assert aggregate.slurm_row(record("m/ddp/2gpu/full-fp32-bs2-seq64"), tmp_path / "job.json")["status"] == "pending"


@pytest.mark.parametrize("setting", ["train_cell", "all", "build_token_cache, train_cell", "x;train_cell"])
def test_training_cells_are_never_a_slurm_array(setting):
    with pytest.raises(ValueError, match=r"--slurm-array-jobs=.*train_cell jobs as one Slurm array"):
        slurm.refuse_array_jobs(setting)


@pytest.mark.parametrize("setting", [None, "", "build_token_cache", "prepare_model,train_tokenizer"])
def test_array_jobs_of_other_rules_are_left_to_the_plugin(setting):
    slurm.refuse_array_jobs(setting)
