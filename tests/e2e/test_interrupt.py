"""Ctrl-C in the terminal: SIGINT to the foreground process group stops the running cell's whole process
group within seconds, records no result for it, and the next run runs that cell (and what never ran)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_failures import SLOW, TINY, profile, rank_pid, scenario
from test_workflow import job_counts

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timed]


def cell_processes(work: Path) -> list[int]:
    """Live processes of this workdir's cells: the launcher, torchrun and the ranks (their command line
    names an ftbench module, and they run in the workdir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = os.readlink(proc / "cwd")
        except (OSError, ValueError, IndexError):
            continue
        if state != "Z" and b"ftbench." in cmdline and cwd == str(work):
            pids.append(int(proc.name))
    return pids


def rank_running(work: Path) -> bool:
    """A rank of one of this workdir's cells is up (its pid is one of the workdir's cell processes). Either
    cell may be the one Snakemake starts first: both train far longer than the test waits."""
    pids = {rank_pid(model, 1) for model in ("slow", "later")} - {None}
    return bool(pids & set(cell_processes(work)))


def test_ctrl_c_stops_the_cell_and_the_next_run_runs_it_again(tmp_path, raw_test_config, run_snakemake, repo):
    work = scenario(
        tmp_path, raw_test_config, {"slow": SLOW, "later": TINY}, steps={"warmup": 1, "measure": 100000, "eval": 1}
    )
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(work)]
    cmd += ["--configfile", str(work / "config.yaml"), *profile(repo)]
    # a session of its own: its process group is what a terminal's foreground group is to Ctrl-C
    snake = subprocess.Popen(
        cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        while not rank_running(work) and time.monotonic() < deadline and snake.poll() is None:
            time.sleep(0.5)
        assert rank_running(work), "no cell started"
        time.sleep(3)
        os.killpg(snake.pid, signal.SIGINT)
        out, _ = snake.communicate(timeout=120)
        time.sleep(10)
        left = cell_processes(work)
    finally:
        if snake.poll() is None:
            os.killpg(snake.pid, signal.SIGKILL)
        for pid in cell_processes(work):  # never leave a failed test's ranks running
            os.kill(pid, signal.SIGKILL)
    assert left == [], f"still running 10 s after Snakemake exited:\n{out[-3000:]}"
    assert not list((work / "results" / "fail" / "runs").rglob("metrics.json"))
    plan = job_counts(run_snakemake(work, "-n").stdout)
    assert plan["train_cell"] == 2  # the stopped cell and the one that never ran
