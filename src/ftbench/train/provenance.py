"""Where a number came from: versions, hardware, commit, job ids. Read once at job start."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import socket
import subprocess

import torch

PACKAGES = ("torch", "transformers", "deepspeed", "accelerate", "peft", "snakemake", "ftbench")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_driver_version(proc_file: str = "/proc/driver/nvidia/version") -> str | None:
    """The NVIDIA kernel driver's version (from the driver's own /proc file, else nvidia-smi), None without
    one: CUDA and NCCL versions alone do not say which driver ran the cell."""
    try:
        with open(proc_file, encoding="utf-8") as f:
            match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", f.read())
        if match:
            return match[1]
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out else None


def git_commit(directory: str | None = None) -> str | None:
    """HEAD of the checkout ftbench runs from (the workflow's own, for an editable install), with "-dirty"
    when tracked files differ from it; None outside a git checkout."""
    directory = directory or os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(
            ["git", "-C", directory, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "-C", directory, "diff", "--quiet", "HEAD"], capture_output=True).returncode
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def collect(device: torch.device, seed: int, environ=os.environ) -> dict:
    info = {
        "versions": {p: _version(p) for p in PACKAGES},
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "device": device.type,
        "git_commit": git_commit(),
        "seed": seed,
        "start_time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "slurm_job_id": environ.get("SLURM_JOB_ID"),
    }
    if device.type == "cuda":
        info["gpu_model"] = torch.cuda.get_device_name(device)
        info["versions"]["cuda"] = torch.version.cuda
        info["versions"]["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        info["versions"]["nvidia_driver"] = nvidia_driver_version()
    return info
