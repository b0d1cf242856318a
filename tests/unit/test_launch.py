import json

import pytest

from ftbench.launch.launcher import (
    ACCOUNTED_MALLOC_TUNABLES,
    MALLOC_TUNABLES,
    rank_env,
    rank_exits,
    root_cause,
)
from ftbench.train import limits


def test_a_killed_rank_is_the_cause_not_the_broken_connection_its_peer_saw():
    peer = {"rank": 0, "error_type": "RuntimeError", "error": "gloo Read error: Connection reset"}
    assert root_cause(2, [peer], {1: "SIGKILL", 0: "exit code 1"}, 1) == (
        "RankDied",
        "rank 1 ended without a report (SIGKILL); then rank 0: RuntimeError",
    )


def test_a_reported_error_is_the_cause_when_every_rank_reported():
    errors = [{"rank": r, "error_type": "ValueError", "error": f"bad input {r}"} for r in (0, 1)]
    assert root_cause(2, errors, {}, 1) == ("ValueError", "bad input 0")


def test_a_rank_torchrun_stopped_is_a_consequence_of_the_peer_that_reported():
    bad = {"rank": 0, "error_type": "ValueError", "error": "cell x: fewer than one global batch"}
    assert root_cause(2, [bad], {1: "SIGTERM"}, 1) == ("ValueError", "cell x: fewer than one global batch")


def test_a_rank_torchrun_stopped_before_it_could_report_is_not_the_cause():
    # seen in CI: rank 1 was killed, torchrun SIGTERMed rank 0 before it wrote its own report
    assert root_cause(2, [], {0: "SIGTERM", 1: "SIGKILL"}, 1) == ("RankDied", "rank 1 ended without a report (SIGKILL)")


def test_the_agents_record_of_each_rank_is_read_per_node(tmp_path):
    from ftbench.launch.agent import exits

    class Failure:  # what torch's ProcessFailure exposes
        def __init__(self, exitcode, local_rank):
            self.exitcode, self.local_rank = exitcode, local_rank

        def signal_name(self):
            return {-9: "SIGKILL", -15: "SIGTERM"}[self.exitcode]

    (tmp_path / "exits-node0.json").write_text(json.dumps(exits({0: Failure(1, 0), 1: Failure(-15, 1)})))
    (tmp_path / "exits-node1.json").write_text(json.dumps(exits({3: Failure(-9, 1)})))
    assert rank_exits(tmp_path) == {0: "exit code 1", 1: "SIGTERM", 3: "SIGKILL"}


def test_oom_errors_are_recognised_by_type_and_allocator_message():
    import torch

    assert limits.is_oom(MemoryError())
    assert limits.is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    assert limits.is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes"))
    assert not limits.is_oom(RuntimeError("shape mismatch"))


def test_ranks_keep_freed_memory_unless_the_user_tuned_malloc():
    assert rank_env({"PATH": "/bin"}, cpu_memory_mb=0) == {"PATH": "/bin", "GLIBC_TUNABLES": MALLOC_TUNABLES}
    assert "glibc.malloc.trim_threshold=" in MALLOC_TUNABLES and "glibc.malloc.mmap_threshold=" in MALLOC_TUNABLES


@pytest.mark.parametrize(("cpu_memory_mb", "gathers"), [(2048, False), (0, True), (2048, True)])
def test_memory_limited_or_gathering_ranks_map_their_buffers(cpu_memory_mb, gathers):
    env = rank_env({}, cpu_memory_mb=cpu_memory_mb, gathers_parameters=gathers)
    assert env["GLIBC_TUNABLES"] == ACCOUNTED_MALLOC_TUNABLES != MALLOC_TUNABLES
    assert ("FTBENCH_CPU_MEMORY_GB" in env) == bool(cpu_memory_mb)
    assert rank_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, 0) == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
