"""Memory limits and how running out of memory is recognised.

On CPU a cell's per-rank budget (`limits.cpu_memory_per_rank_gb`) is what the rank may allocate for its model's
weights and training once its runtime is up (Python, torch, transformers, the strategy's libraries, the
process group, the model built on the meta device). It is enforced with RLIMIT_DATA, set at that moment to
the process's private writable memory (VmData) plus the budget: an allocation past it fails inside torch with a real
error ("can't allocate memory"), which the rank reports as OOM. (A cgroup limit would SIGKILL the process
instead, which cannot be told apart from any other kill.) RLIMIT_DATA counts heap and anonymous mappings,
not mapped files or shared libraries: RLIMIT_AS, used before, also counted every library mapped and the
address space each thread and malloc arena reserves (~0.35 GB of a rank's import of transformers alone), so a
budget below one replica left nothing for a shard. On GPU the CUDA allocator raises torch.OutOfMemoryError at
the device's real capacity.
"""

from __future__ import annotations

import resource

import torch

from ftbench.train.metrics import proc_status_kib

OOM_MESSAGES = ("can't allocate memory", "out of memory", "defaultcpuallocator")


def private_writable_bytes() -> int:
    """VmData: what RLIMIT_DATA counts."""
    return proc_status_kib("VmData") * 1024


def limit_cpu_memory(budget_gb: float) -> int:
    """Cap this process's private writable memory at its current size + `budget_gb`; the limit in bytes."""
    limit = private_writable_bytes() + int(budget_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    return limit


def is_oom(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in OOM_MESSAGES)
