"""Run one cell's torchrun job and turn how it ended into a result.

    python -m ftbench.launch --gpus N [--nodes M] --timeout-s S [--cpu-memory-mb M] --log LOG -- <train_cell args>

- all ranks finished: train_cell wrote metrics.json (status ok);
- a rank ran out of memory: it left `oom-rank<r>.json` and exited at once, torchrun stopped the others;
  metrics.json gets status "oom" and what was measured before it; exit 0 (a result, not a failure);
- past the wall-time limit (the cell's own, or the Slurm job's end less a margin, whichever comes first): the
  whole process group is stopped, metrics.json gets status "timeout"; exit 0;
- anything else (a crash, a killed rank, a collective timeout): failure.json beside the (absent) metrics.json
  keeps the exception and each rank's last log lines, and the job fails so Snakemake retries or re-runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ftbench import record
from ftbench.cell import parse_job_spec
from ftbench.files import atomic_write_json, read_json
from ftbench.launch import agent, slurm
from ftbench.record import (
    EXITS_FILE,
    FAILURE_FILE,
    JOB_FILE,
    RANK_ERROR_FILE,
    RANK_OOM_FILE,
    STATUS_FAILED,
    STATUS_OOM,
    STATUS_TIMEOUT,
)
from ftbench.registry import STRATEGIES

MARKERS = tuple(
    name.format(rank="*", node="*") for name in (RANK_OOM_FILE, RANK_ERROR_FILE, EXITS_FILE, FAILURE_FILE, JOB_FILE)
)
LOG_TAIL_LINES = 40
# glibc malloc, for the ranks: serve allocations up to 32 MiB from the heap and keep freed heap memory. Its
# defaults return a step's freed activations to the OS (munmap, heap trimming), and the next step
# page-faults them back in: ~4 % of a tiny model's CPU step. Set only when the user has not set it.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"
# Where memory is the measurement, every buffer from 128 KiB up is mapped and unmapped (glibc's initial
# threshold, fixed: its dynamic one rises to the largest freed buffer): for a strategy that gathers and frees
# whole layers every step (FSDP, ZeRO-3), whose freed layers otherwise stay resident in a fragmented heap (fsdp,
# 4 ranks, ~120M parameters: 2.6 GB per rank at training with the setting above, 1.1 with a 4 MiB threshold,
# 0.69 with this one, ~25 % fewer tokens/s on CPU than 4 MiB), and for a cell under a per-rank memory limit,
# which counts the heap's free space as used (a replica grew into it without reaching the limit).
ACCOUNTED_MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=1073741824"
KILL_GRACE_S = 10


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the job's whole process group (torchrun, or srun, and every rank), SIGKILL what is left of it
    after a grace period: a rank torchrun's exit left behind is stopped too."""
    deadline = time.monotonic() + KILL_GRACE_S
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(KILL_GRACE_S)
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class Interrupted(Exception):
    """SIGINT (Ctrl-C in the terminal) or SIGTERM (Snakemake stopping its jobs, scancel) reached the launcher."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupted(signum, _frame):
    raise Interrupted(signum)


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        return log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def rank_exits(cell_dir: Path) -> dict[int, str]:
    """How each failed rank ended, from the agents' records: a signal name or "exit code N"."""
    ended = {}
    for path in sorted(cell_dir.glob(EXITS_FILE.format(node="*"))):
        for rank, exit_ in read_json(path).items():
            ended[int(rank)] = exit_["signal"] or f"exit code {exit_['exitcode']}"
    return ended


def root_cause(gpus: int, errors: list[dict], exits: dict[int, str], returncode: int) -> tuple[str, str]:
    """The first thing that went wrong: a rank that died without a report (killed) comes before the errors
    its peers then saw (a broken connection is a consequence, not the cause). torchrun SIGTERMs the
    survivors once a rank fails, so a rank that ended by SIGTERM is a consequence too."""
    silent = sorted(set(range(gpus)) - {e["rank"] for e in errors})
    ended = {rank: exits.get(rank, "") for rank in silent}
    died = [rank for rank in silent if ended[rank] != "SIGTERM"]
    if errors and not died:  # the report of the rank that failed is the cause
        return errors[0]["error_type"], errors[0]["error"]
    if silent:
        died = died or silent  # every silent rank was stopped and none reported: name them all
        how = f" ({ended[died[0]]})" if ended[died[0]] else ""
        after = f"; then rank {errors[0]['rank']}: {errors[0]['error_type']}" if errors else ""
        return "RankDied", f"rank {', '.join(map(str, died))} ended without a report{how}{after}"
    if errors:
        return errors[0]["error_type"], errors[0]["error"]
    return "RankDied", f"torchrun exited with {returncode}"


def deadline(timeout_s: float, slurm_left_s: float | None) -> tuple[float, str]:
    """The wall time this cell may take and whose limit it is ("cell" or "slurm"); 0: none."""
    if slurm_left_s is not None:
        slurm_s = max(slurm_left_s - slurm.RESULT_MARGIN_S - KILL_GRACE_S, 1.0)
        if not timeout_s or slurm_s < timeout_s:
            return slurm_s, "slurm"
    return timeout_s, "cell"


def rank_env(environ, cpu_memory_mb: int, gathers_parameters: bool = False) -> dict:
    """The ranks' environment: the job's, the per-rank memory budget, glibc malloc settings (unless set)."""
    env = dict(environ)
    accounted = gathers_parameters or cpu_memory_mb > 0
    env.setdefault("GLIBC_TUNABLES", ACCOUNTED_MALLOC_TUNABLES if accounted else MALLOC_TUNABLES)
    if cpu_memory_mb:
        env["FTBENCH_CPU_MEMORY_GB"] = str(cpu_memory_mb / 1024)
    return env


def run(gpus: int, timeout_s: float, log: Path, train_args: list[str], cpu_memory_mb: int = 0, nodes: int = 1) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True, type=Path)
    known, _ = parser.parse_known_args(train_args)
    spec, cell = parse_job_spec(known.spec)
    out, cell_fields = known.out, record.header(cell, spec)
    cell_dir = out.parent
    cell_dir.mkdir(parents=True, exist_ok=True)
    for pattern in MARKERS:  # leftovers of an earlier attempt
        for stale in cell_dir.glob(pattern):
            stale.unlink()
    env = rank_env(os.environ, cpu_memory_mb, STRATEGIES[cell.strategy].gathers_parameters)
    env[agent.EXITS_ENV] = str(cell_dir / EXITS_FILE)
    timeout_s, limited_by = deadline(timeout_s, slurm.job_time_left(env))
    atomic_write_json(cell_dir / JOB_FILE, {"started": time.time(), "slurm": slurm.current_job(env)})
    threads = spec["hardware"]["cpu_threads_per_rank"]
    torchrun = slurm.torchrun_command(sys.executable, gpus, nodes, env, threads)
    cmd = [*torchrun, "-m", "ftbench.train.job", *train_args]
    env["FTBENCH_LAUNCH_T0"] = str(time.time())  # the cell's fixed cost is counted from here
    print("ftbench.launch:", " ".join(cmd[:12]), "...", flush=True)
    start = time.monotonic()
    # torchrun runs in a session of its own (the timeout stops its whole group), so a terminal's Ctrl-C or
    # Snakemake's SIGTERM reaches only this process: it passes them on to the group
    handlers = {sig: signal.signal(sig, _interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    proc = None
    try:
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        returncode = proc.wait(timeout=timeout_s or None)
    except Interrupted as stop:
        for sig in handlers:  # a second Ctrl-C must not cut the stopping short
            signal.signal(sig, signal.SIG_IGN)
        if proc is not None:
            stop_group(proc)
        out.unlink(missing_ok=True)  # a cell that was stopped has no result: the next run runs it again
        print(f"ftbench.launch: {stop}: stopped the cell's processes, no result recorded", flush=True)
        return 128 + stop.signum
    except subprocess.TimeoutExpired:
        stop_group(proc)
        atomic_write_json(
            out,
            {
                **cell_fields,
                "status": STATUS_TIMEOUT,
                "timeout_s": timeout_s,
                "timeout_by": limited_by,
                "elapsed_s": time.monotonic() - start,
                "config": spec,
            },
        )
        print(f"ftbench.launch: {cell.id} stopped after the {timeout_s:.0f} s limit: status timeout")
        return 0
    for sig, handler in handlers.items():  # torchrun has ended: nothing left to pass a signal on to
        signal.signal(sig, handler)
    if returncode == 0 and out.exists():
        return 0
    ooms = [read_json(p) for p in sorted(cell_dir.glob(RANK_OOM_FILE.format(rank="*")))]
    if ooms:
        first = ooms[0]
        atomic_write_json(
            out,
            {
                **cell_fields,
                "status": STATUS_OOM,
                **first,
                "oom_ranks": [oom["rank"] for oom in ooms],
                "config": spec,
            },
        )
        print(f"ftbench.launch: rank {first['rank']} ran out of memory in {first['phase']}: status oom")
        return 0
    errors = [read_json(p) for p in sorted(cell_dir.glob(RANK_ERROR_FILE.format(rank="*")))]
    tail = log_tail(log)
    error_type, error = root_cause(gpus, errors, rank_exits(cell_dir), returncode)
    failure = {
        **cell_fields,
        "status": STATUS_FAILED,
        "returncode": returncode,
        "elapsed_s": time.monotonic() - start,
        "error_type": error_type,
        "error": error,
        "rank_errors": errors,
        "log_tail": tail,
    }
    atomic_write_json(cell_dir / FAILURE_FILE, failure)
    print(f"ftbench.launch: cell failed (torchrun exit {returncode}); see {cell_dir / FAILURE_FILE}")
    return 1


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, required=True, help="processes (GPUs) of the cell, all nodes")
    parser.add_argument("--nodes", type=int, default=1, help="nodes the GPUs span (one torchrun per node)")
    parser.add_argument("--timeout-s", type=float, default=0, help="wall-time limit of the cell; 0: none")
    parser.add_argument("--cpu-memory-mb", type=int, default=0, help="per-rank memory budget on CPU; 0: none")
    parser.add_argument("--log", type=Path, required=True, help="the job's log (for the failure record)")
    args = parser.parse_args(argv[:split])
    sys.exit(run(args.gpus, args.timeout_s, args.log, argv[split + 1 :], args.cpu_memory_mb, args.nodes))


if __name__ == "__main__":
    main()
