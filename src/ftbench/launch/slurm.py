"""Slurm: a cell's GPU count as nodes x GPUs per node, the Slurm resources of its job, the multi-node
torchrun line, and what Slurm says about a job that ended without a result.

The resources are read by snakemake-executor-plugin-slurm. GPUs are asked for per node (`--gres=gpu:G`),
never per task: a per-task binding hides a node's other GPUs from each rank and breaks NCCL peer-to-peer.
A cell is one task per node running torchrun; above one node the rule's own `srun` starts them.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

from ftbench.errors import ConfigError

NO_LIMIT_RUNTIME_MIN = 7 * 24 * 60
STARTUP_SLACK_MIN = 10
"""Slurm's limit is the cell's own limit plus this: imports, model load and writing the result."""
RESULT_MARGIN_S = 90
"""Under a Slurm limit shorter than the cell's own, the cell is stopped this long before Slurm would kill it,
so it is recorded as a timeout instead of lost."""
RDZV_PORT_BASE, RDZV_PORT_SPAN = 20000, 10000
"""Below Linux's ephemeral range: two jobs sharing a node never collide on a fixed 29500."""


@dataclass(frozen=True)
class Geometry:
    nodes: int
    gpus_per_node: int
    """GPUs (ranks) used on each node."""


def geometry(gpus: int, gpus_per_node: int, key: str = "matrix.gpus") -> Geometry:
    """Up to one node's GPUs on one node; above it whole nodes (a count that does not fill them is refused,
    naming `key`, the config entry it came from)."""
    if gpus <= gpus_per_node:
        return Geometry(1, gpus)
    if gpus % gpus_per_node:
        raise ConfigError(
            f"{key}: {gpus} GPUs do not fill whole nodes of hardware.gpus_per_node={gpus_per_node}; "
            f"above one node use a multiple of {gpus_per_node}"
        )
    return Geometry(gpus // gpus_per_node, gpus_per_node)


def runtime_min(timeout_s: int) -> int:
    """Slurm time limit (minutes) of a job whose own wall-time limit is `timeout_s` (0: none)."""
    return math.ceil(timeout_s / 60) + STARTUP_SLACK_MIN if timeout_s else NO_LIMIT_RUNTIME_MIN


def gpu_gres(hardware: dict) -> str | None:
    """The gres name GPUs are requested by: `hardware.gpu_gres`, else "gpu" unless the device is the CPU."""
    name = hardware.get("gpu_gres")
    if name is None:
        return None if hardware["device"] == "cpu" else "gpu"
    return name or None


def refuse_array_jobs(setting: str | None, rules: tuple[str, ...] = ("train_cell",)) -> None:
    """The Slurm plugin's `--slurm-array-jobs` must not take a training cell: an array job asks its first
    task's resources for every task (one cell's nodes, GPUs and memory for all) and would run a multi-node
    cell's one-task-per-node layout for every cell. Refused before any job is submitted, naming the option."""
    chosen = {rule.strip() for rule in (setting or "").replace(";", ",").split(",") if rule.strip()}
    hit = sorted(chosen & {"all", *rules})
    if hit:
        raise ValueError(
            f"--slurm-array-jobs={setting}: {', '.join(hit)} would submit train_cell jobs as one Slurm array, which "
            "gives every cell the first cell's nodes, GPUs and memory; name the other rules instead (e.g. "
            "--slurm-array-jobs=build_token_cache) or drop the option"
        )


def mem_mb(hardware: dict, gpus: int, per_rank_gb: float) -> int:
    """`--mem` of a job on `gpus` GPUs: the ranks of one node x `per_rank_gb`."""
    return math.ceil(geometry(gpus, hardware["gpus_per_node"]).gpus_per_node * per_rank_gb * 1024)


def job_resources(hardware: dict, gpus: int, runtime: int) -> dict:
    """Snakemake resources of a job on `gpus` GPUs (one task per node). None leaves a resource unset: `mem_mb`
    without `hardware.host_memory_per_rank_gb`, which a training cell then estimates from its model."""
    shape = geometry(gpus, hardware["gpus_per_node"])
    per_rank_gb = hardware.get("host_memory_per_rank_gb")
    gres = gpu_gres(hardware)
    multi_node = shape.nodes > 1
    return {
        "nodes": shape.nodes,
        "gres": f"{gres}:{shape.gpus_per_node}" if gres else None,
        "cpus_per_task": shape.gpus_per_node * hardware["cpu_threads_per_rank"],
        "mem_mb": mem_mb(hardware, gpus, per_rank_gb) if per_rank_gb else None,
        "runtime": runtime,
        # the plugin turns `tasks` of a GPU job into --ntasks-per-gpu unless this is set, and 0 adds nothing
        "tasks_per_gpu": 0,
        # multi-node: `mpi` keeps the plugin from wrapping the rule in a one-task srun step, so the launcher's
        # own `srun` (one torchrun per node) gets the whole allocation
        "mpi": "srun" if multi_node else None,
        "tasks": shape.nodes if multi_node else None,
    }


def _query(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def job_nodelist(env: dict[str, str]) -> str:
    """The job's nodes ("n[1-2]"). The jobstep plugin strips SLURM_* but the job id, so squeue is asked."""
    return env.get("SLURM_JOB_NODELIST") or _query("squeue", "-h", "-j", env["SLURM_JOB_ID"], "-o", "%N")


def first_host(nodelist: str) -> str:
    if shutil.which("scontrol"):
        return _query("scontrol", "show", "hostnames", nodelist).split()[0]
    return re.split(r"[,\[]", nodelist)[0]  # "node" or "node[01-04]": without scontrol, the plain prefix


def torchrun_command(python: str, gpus: int, nodes: int, env: dict[str, str], threads_per_rank: int = 1) -> list[str]:
    """torchrun on one node (standalone), or under Slurm one torchrun per node through `srun` with a c10d
    rendezvous on the first node and a port derived from the job id. Each node's task gets the CPUs of all
    its ranks, as the job asked (`cpus_per_task`): since Slurm 22.05 srun does not inherit the job's
    --cpus-per-task, and the jobstep plugin strips SLURM_* before the rule runs, so without it every rank of
    a node would share the task's one CPU where Slurm binds tasks to CPUs."""
    if nodes == 1:
        return [python, "-m", "ftbench.launch.agent", "--standalone", f"--nproc-per-node={gpus}"]
    job = env.get("SLURM_JOB_ID")
    if not job:
        raise RuntimeError(
            f"a {gpus}-GPU cell spans {nodes} nodes: run it under Slurm (snakemake --profile profiles/slurm)"
        )
    host = first_host(job_nodelist(env))
    port = RDZV_PORT_BASE + int(job) % RDZV_PORT_SPAN
    return [
        "srun",
        "--kill-on-bad-exit=1",  # one node's torchrun failing ends the others instead of leaving them waiting
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={gpus // nodes * threads_per_rank}",
        python,
        "-m",
        "ftbench.launch.slurm",  # node_torchrun, on each node
        f"--nnodes={nodes}",
        f"--nproc-per-node={gpus // nodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={host}:{port}",
        f"--rdzv-id={job}",
    ]


def parse_time_left(text: str) -> float | None:
    """squeue's %L ("[D-]HH:MM:SS", "MM:SS", "UNLIMITED") in seconds; None without a limit."""
    text = text.strip()
    if not text or not text[0].isdigit():
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def job_time_left(env: dict[str, str]) -> float | None:
    """Seconds until Slurm ends the job this process runs in; None outside Slurm or without a limit."""
    job = env.get("SLURM_JOB_ID")
    if not job or not shutil.which("squeue"):
        return None
    proc = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True, text=True)
    return parse_time_left(proc.stdout) if proc.returncode == 0 else None


def job_state(job_id: str) -> str | None:
    """Slurm's final state of a job (TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...) from sacct; None if unknown."""
    if not shutil.which("sacct"):
        return None
    proc = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", str(job_id), "-o", "State"], capture_output=True, text=True, timeout=60
    )
    states = proc.stdout.split()
    return states[0].split()[0] if proc.returncode == 0 and states else None


def current_job(env: dict[str, str]) -> dict:
    """The Slurm job this process runs in, for the cell's job record ({} outside Slurm)."""
    if "SLURM_JOB_ID" not in env:
        return {}
    return {"job_id": env["SLURM_JOB_ID"], "nodelist": job_nodelist(env)}


def node_torchrun(argv: list[str]) -> None:
    """torchrun on one node of a multi-node job, told whether it hosts the rendezvous store (node 0) and by
    which name the other nodes reach it.

    torchrun guesses both from this machine's hostname, which fails wherever Slurm's node names are not the
    hostnames (or the hostname resolves to loopback); Slurm's node id and node name are never wrong."""
    is_host = int(os.environ.get("SLURM_NODEID", "0") == "0")
    torchrun = [sys.executable, "-m", "ftbench.launch.agent", f"--rdzv-conf=is_host={is_host}"]
    if "SLURMD_NODENAME" in os.environ:  # the address the other nodes reach this one by (else its FQDN)
        torchrun.append(f"--local-addr={os.environ['SLURMD_NODENAME']}")
    torchrun += argv
    os.execv(sys.executable, torchrun)


if __name__ == "__main__":
    node_torchrun(sys.argv[1:])
