"""Every measured number of a cell is computed here; the loop only feeds it.

Clock reads follow a barrier (and a device sync on GPU), so a step's time is the slowest rank's.
"""

from __future__ import annotations

import math
import os
import resource
import time

import numpy as np
import torch
import torch.distributed as dist

from ftbench.train.layers import decoder_layers


def sync(device: torch.device) -> None:
    """Wait for queued device work and for every rank, so the next clock read means "all done"."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if dist.is_initialized():
        dist.barrier()


def nvml_energy_reader(device: torch.device):
    """A function returning the GPU's total-energy counter in joules (NVML: millijoules since the driver
    loaded), or None: not CUDA, NVML missing, or a GPU without the counter (before Volta). Never guessed."""
    if device.type != "cuda":
        return None
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        index = device.index if device.index is not None else torch.cuda.current_device()
        # NVML numbers GPUs in PCI order, CUDA after CUDA_VISIBLE_DEVICES: the UUID names the same one
        handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{torch.cuda.get_device_properties(index).uuid}")
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except pynvml.NVMLError:
        return None
    return lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000


class StepClock:
    """Wall time per step, read after `sync`; and, where the GPU counts it, the energy the timed steps used."""

    def __init__(self, device: torch.device):
        self.device = device
        self.step_times: list[float] = []
        self._last = None
        self._energy = nvml_energy_reader(device)
        self._energy_start = None

    def start(self) -> None:
        sync(self.device)
        self._last = time.perf_counter()
        self._energy_start = self._energy() if self._energy else None

    def lap(self) -> float:
        sync(self.device)
        now = time.perf_counter()
        self.step_times.append(now - self._last)
        self._last = now
        return self.step_times[-1]

    def energy_j(self) -> float | None:
        """Joules every rank's GPU used from `start` to now (call it right after the last `lap`), summed; None
        unless every rank could read it. Collective: every rank calls it."""
        mine = self._energy() - self._energy_start if self._energy and self._energy_start is not None else None
        values = torch.tensor([mine or 0.0, mine is not None], dtype=torch.float64, device=self.device)
        if dist.is_initialized():
            dist.all_reduce(values)
        world = dist.get_world_size() if dist.is_initialized() else 1
        return float(values[0]) if int(values[1]) == world else None


STARTUP_PHASES = ["main", "transformers", "process_group", "model_load", "strategy_setup", "first_step"]
"""Marks rank 0 takes from the launcher's start to its first training step, in order."""


def startup(marks: dict[str, float], launch_t0: str | None) -> dict:
    """The cell's fixed cost: seconds from the launcher starting torchrun to the first training step, and
    each phase (`main`: torchrun, Python and torch imports; then transformers, the process group, loading
    the model, the strategy's setup incl. DeepSpeed's op load, opening the data)."""
    if not launch_t0 or any(k not in marks for k in STARTUP_PHASES):
        return {}
    times = [float(launch_t0), *(marks[k] for k in STARTUP_PHASES)]
    phases = {k: round(b - a, 4) for k, a, b in zip(STARTUP_PHASES, times[:-1], times[1:], strict=True)}
    return {"startup_s": marks["first_step"] - float(launch_t0), "startup_phases_s": phases}


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Average a tensor over ranks (each rank's loss covers an equal share of the batch)."""
    values = values.detach().float().clone()
    if dist.is_initialized():
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


def peak_memory(device: torch.device) -> dict:
    """This rank's peaks since the process started: CPU resident set (ru_maxrss is KiB on Linux) and, on
    CUDA, the allocator's (since its last reset: `MemoryPhases` keeps the whole run's)."""
    mem = {"cpu_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if device.type == "cuda":
        mem["gpu_peak_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        mem["gpu_peak_reserved_gb"] = torch.cuda.max_memory_reserved(device) / 2**30
    return mem


def proc_status_kib(field: str) -> int:
    """A size field of /proc/self/status (VmHWM, VmData, ...), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def host_peak_gb() -> float:
    """This process's resident-set high-water mark since the last `reset_host_peak` (VmHWM)."""
    return proc_status_kib("VmHWM") / 2**20


def reset_host_peak() -> None:
    """Set VmHWM to the current resident set (Linux >= 4.0): ru_maxrss cannot be reset, this can."""
    fd = os.open("/proc/self/clear_refs", os.O_WRONLY)  # a kernel control, not a result file
    try:
        os.write(fd, b"5")
    finally:
        os.close(fd)


class MemoryPhases:
    """Per-rank peaks of the setup (creating, loading, sharding the model) and of the training steps, kept
    apart: a sharded strategy's training peak is not its loading peak. Host: VmHWM (resident pages, file
    pages a mapping touched included); CUDA: the allocator's allocated and reserved peaks."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peaks: dict[str, float] = {}

    def _read(self, phase: str) -> None:
        self.peaks[f"{phase}_host_peak_gb"] = host_peak_gb()
        if self.device.type == "cuda":
            self.peaks[f"{phase}_gpu_peak_allocated_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
            self.peaks[f"{phase}_gpu_peak_reserved_gb"] = torch.cuda.max_memory_reserved(self.device) / 2**30

    def end_setup(self) -> None:
        sync(self.device)
        self._read("setup")
        reset_host_peak()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def end_train(self) -> None:
        sync(self.device)
        self._read("train")

    def summary(self) -> dict:
        """This rank's figures: the phases' peaks and the whole run's (`cpu_peak_rss_gb`, `gpu_peak_*`)."""
        out = {**peak_memory(self.device), **self.peaks}
        if self.device.type == "cuda":  # the allocator was reset after setup: the run's peak is the larger
            for kind in ("allocated", "reserved"):
                out[f"gpu_peak_{kind}_gb"] = max(out[f"gpu_peak_{kind}_gb"], self.peaks[f"setup_gpu_peak_{kind}_gb"])
        return out


def gather(obj) -> list:
    """`obj` from every rank, in rank order."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def throughput(tokens_per_step: int, samples_per_step: int, step_times: list[float]) -> dict:
    """Tokens and samples per second over the measured steps (each token counted once for the job)."""
    total = sum(step_times)
    times = np.asarray(step_times)
    return {
        "train_time_s": total,
        "train_tokens_per_s": tokens_per_step * len(step_times) / total,
        "train_samples_per_s": samples_per_step * len(step_times) / total,
        "step_time_p50_s": float(np.percentile(times, 50)),
        "step_time_p95_s": float(np.percentile(times, 95)),
    }


def energy(joules: float | None, tokens: int) -> dict:
    """`train_energy_j` (every GPU over the timed steps) and `train_energy_j_per_token`; nothing without a
    reading (CPU cells, GPUs without NVML's counter)."""
    if joules is None:
        return {}
    return {"train_energy_j": joules, "train_energy_j_per_token": joules / tokens}


def memory_summary(per_rank: list[dict]) -> dict:
    """Max over ranks of each peak; `peak_memory_gb` is the GPU's reserved peak, else the CPU RSS peak, over
    the whole run; `setup_peak_memory_gb` and `train_peak_memory_gb` the same figure for each phase."""
    keys = sorted({k for rank in per_rank for k in rank})
    peaks = {k: max(rank.get(k, 0.0) for rank in per_rank) for k in keys}
    peaks["peak_memory_gb"] = peaks.get("gpu_peak_reserved_gb", peaks["cpu_peak_rss_gb"])
    peaks["peak_memory_kind"] = "gpu_reserved" if "gpu_peak_reserved_gb" in peaks else "cpu_rss"
    for phase in ("setup", "train"):  # the same kind of figure as peak_memory_gb, for one phase
        key = f"{phase}_gpu_peak_reserved_gb" if "gpu_peak_reserved_gb" in peaks else f"{phase}_host_peak_gb"
        if key in peaks:
            peaks[f"{phase}_peak_memory_gb"] = peaks[key]
    peaks["memory_per_rank"] = per_rank
    return peaks


def perplexity(loss: float) -> float:
    return math.inf if loss >= 700 else math.exp(loss)  # NaN stays NaN


def divergence_note(losses: list[float]) -> str | None:
    """Where the loss stopped being finite, if it did: the throughput still stands, the loss columns not."""
    bad = next((step for step, loss in enumerate(losses) if not math.isfinite(loss)), None)
    return None if bad is None else f"loss diverged: not finite from step {bad} of {len(losses)}"


def flops_per_token(model: torch.nn.Module, seq_len: int, recompute: bool = False) -> dict:
    """Training FLOPs per token, the PaLM / torchtitan count generalised to frozen weights:

        4·N + 2·N_trainable + 12·L·d·S

    N: parameters that multiply activations (all parameters minus the input embedding table, whose lookup
    costs nothing; a tied LM head counts it once). Each such weight costs 2 FLOPs/token forward and 2 for the
    input gradient; only trainable ones cost 2 more for the weight gradient. So full fine-tuning gives the
    familiar 6·N + 12·L·d·S; LoRA's frozen weights still cost forward + input-grad. 12·L·d·S is attention's
    score and value matmuls (forward + both gradients; no weights, so the same for every method).

    `hardware_flops_per_token` adds what activation checkpointing (`recompute`) runs again: every decoder
    layer's forward, 2·N_layers + 4·L·d·S. HFU divides it, MFU divides `flops_per_token`, as in PaLM."""
    config = model.config
    embedding = model.get_input_embeddings().weight
    tied = getattr(config, "tie_word_embeddings", False)

    def matmul_params(trainable_only: bool) -> int:
        total = 0
        for p in model.parameters():
            if trainable_only and not p.requires_grad:
                continue
            if p is embedding and not tied:
                continue
            total += p.numel()
        return total

    n, n_trainable = matmul_params(False), matmul_params(True)
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq_len
    model_flops = 4 * n + 2 * n_trainable + attention
    recomputed = 0
    if recompute:
        layer_params = sum(p.numel() for p in decoder_layers(model).parameters())
        recomputed = 2 * layer_params + attention // 3
    return {
        "flops_per_token": model_flops,
        "hardware_flops_per_token": model_flops + recomputed,
        "matmul_params": n,
        "matmul_params_trainable": n_trainable,
    }
