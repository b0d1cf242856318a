"""The machine's measured matmul ceiling: large square matmuls timed on one rank's share of the device
(on CPU: `cpu_threads_per_rank` threads), fp32 and bf16. MFU is reported against this and, on GPUs, against
the datasheet (ftbench.peaks)."""

from __future__ import annotations

import logging
import statistics
import time

import torch

from ftbench import provenance
from ftbench.files import atomic_write_json
from ftbench.metrics import sync

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_flops(device: torch.device, dtype: torch.dtype, size: int, reps: int) -> dict:
    """Median FLOP/s of `reps` timed `size`² x `size`² matmuls after one untimed."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    times = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"flops_per_s": 2 * size**3 / median, "median_s": median, "times_s": times, "size": size}


def calibrate(device_request: str, threads: int, out, size: int = 4096, reps: int = 10) -> dict:
    from ftbench.train_cell import pick_device

    device = pick_device(device_request, 0)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    result = {
        "device": device.type,
        "device_model": torch.cuda.get_device_name(device) if device.type == "cuda" else provenance.cpu_model(),
        "cpu_threads": threads if device.type == "cpu" else None,
        "matmul": {name: matmul_flops(device, dtype, size, reps) for name, dtype in DTYPES.items()},
        "versions": {"torch": torch.__version__},
    }
    for name, m in result["matmul"].items():
        log.info("%s: %.1f GFLOP/s (median of %d %d² matmuls)", name, m["flops_per_s"] / 1e9, reps, size)
    atomic_write_json(out, result)
    return result
