"""The machine's measured matmul ceiling: large square matmuls timed on one rank's share of the device
(on CPU: `cpu_threads_per_rank` threads), fp32 and bf16. MFU is reported against this and, on GPUs, against
the datasheet (ftbench.peaks)."""

from __future__ import annotations

import logging
import statistics
import time

import torch

from ftbench.files import atomic_write_json
from ftbench.precision import precision_of
from ftbench.train import provenance
from ftbench.train.metrics import sync

log = logging.getLogger(__name__)


def time_matmul(a: torch.Tensor, b: torch.Tensor, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    a @ b
    sync(device)
    return time.perf_counter() - start


def matmul_flops(device: torch.device, dtype: torch.dtype, size: int, reps: int, budget_s: float) -> dict:
    """Median FLOP/s of up to `reps` timed square matmuls after one untimed, at the largest power-of-two size
    up to `size` whose timed calls fit in `budget_s`. A fixed 4096² bf16 matmul takes ~30 s on a CPU without
    bf16 units; a size chosen by time keeps calibration to seconds there and at full size on GPUs."""
    n = min(size, 256)
    while True:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b  # warm-up: kernels, allocator
        once = time_matmul(a, b, device)
        if n * 2 > size or 8 * once * reps > budget_s:  # doubling n costs 8x per call
            break
        n *= 2
    reps = max(3, min(reps, int(budget_s / max(once, 1e-9))))
    times = [time_matmul(a, b, device) for _ in range(reps)]
    median = statistics.median(times)
    return {"flops_per_s": 2 * n**3 / median, "median_s": median, "times_s": times, "size": n}


def calibrate(
    device_request: str,
    threads: int,
    out,
    size: int = 4096,
    reps: int = 10,
    budget_s: float = 4.0,
    precisions: tuple[str, ...] = ("fp32", "bf16"),
) -> dict:
    from ftbench.train.job import pick_device

    untimed = [name for name in precisions if precision_of(name).calibrated == "never"]
    if untimed:
        raise ValueError(f"calibration times no {', '.join(untimed)}: no plain dtype runs its matmuls")
    device = pick_device(device_request, 0)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    result = {
        "device": device.type,
        "device_model": torch.cuda.get_device_name(device) if device.type == "cuda" else provenance.cpu_model(),
        "cpu_threads": threads if device.type == "cpu" else None,
        "matmul": {
            name: matmul_flops(device, getattr(torch, precision_of(name).compute_dtype), size, reps, budget_s)
            for name in precisions
        },
        "versions": {"torch": torch.__version__},
    }
    for name, m in result["matmul"].items():
        log.info(
            "%s: %.1f GFLOP/s (median of %d %d² matmuls)", name, m["flops_per_s"] / 1e9, len(m["times_s"]), m["size"]
        )
    atomic_write_json(out, result)
    return result
