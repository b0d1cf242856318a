"""Memory limits and how running out of memory is recognised.

On CPU a cell's per-rank budget is enforced with RLIMIT_AS, set to the process's virtual size when the
limit is applied plus the budget: an allocation past it fails inside torch with a real error ("can't
allocate memory"), which the rank reports as OOM. (A cgroup limit would SIGKILL the process instead, which
cannot be told apart from any other kill.) RLIMIT_AS counts virtual memory, so the budget includes address
space malloc and threads reserve, not only resident pages. On GPU the CUDA allocator raises
torch.OutOfMemoryError at the device's real capacity.
"""

from __future__ import annotations

import resource

import psutil
import torch

OOM_MESSAGES = ("can't allocate memory", "out of memory", "defaultcpuallocator")


def limit_cpu_memory(budget_gb: float) -> int:
    """Cap this process's address space at its current size + `budget_gb`; returns the limit in bytes."""
    limit = psutil.Process().memory_info().vms + int(budget_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


def is_oom(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in OOM_MESSAGES)
