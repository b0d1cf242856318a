"""Failures are data: a real OOM, a crash from bad input, a SIGKILLed rank and a timeout, each in one cell of a
real snakemake run. The other cells complete, the tables show every cell, and a follow-up dry run plans
exactly the failed cells (from Snakemake's own Job stats)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import helpers
import pytest
import yaml
from test_workflow import job_counts

from ftbench.report import tables

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timed]

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 128}
BIG = {"hidden_size": 384, "num_layers": 8, "num_heads": 6, "intermediate_size": 1024, "max_positions": 128}
SLOW = {"hidden_size": 256, "num_layers": 6, "num_heads": 4, "intermediate_size": 688, "max_positions": 128}


# the next run's plan after one failed cell: that cell again, and what reads its result
ONLY_THE_FAILED_CELL = {"train_cell": 1, "aggregate_metrics": 1, "render_charts": 2, "render_report": 1, "all": 1}


def scenario(tmp_path, raw_test_config, models: dict, **overrides) -> Path:
    """A workdir whose matrix is `models` (name -> architecture or model dict) x ddp x 2 processes."""
    config = {**raw_test_config, **overrides, "run_name": "fail"}
    config["matrix"] = {"strategies": ["ddp"], "gpus": [2], "seq_len": [64]}
    config["models"] = [
        {
            "name": name,
            "source": "config:llama",
            "tokenizer": "builtin:bpe-512",
            **({"architecture": m} if "hidden_size" in m else m),
        }
        for name, m in models.items()
    ]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    begin, end = tables.markers("fail")
    (tmp_path / "README.md").write_text(f"# notes\n\n{begin}\n{end}\n")
    return tmp_path


def summary(workdir: Path) -> dict[str, dict]:
    return helpers.summary(workdir, "fail", key="model")


def readme_row(workdir: Path, model: str) -> str:
    text = (workdir / "README.md").read_text()
    section = text.split(f"#### {model}\n", 1)[1]
    return next(line for line in section.splitlines() if line.startswith("| 2 | ddp"))


def profile(repo) -> list[str]:
    return ["--profile", str(repo / "profiles" / "local")]


def test_real_oom_is_a_result_and_not_rerun(tmp_path, raw_test_config, run_snakemake, repo):
    work = scenario(tmp_path, raw_test_config, {"tiny": TINY, "big": BIG}, limits={"cpu_memory_per_rank_gb": 0.1})
    run_snakemake(work, *profile(repo))  # an OOM cell is a result: the run succeeds
    rows = summary(work)
    assert rows["tiny"]["status"] == "ok" and rows["big"]["status"] == "oom"
    metrics = json.loads(next((work / "results" / "fail" / "runs" / "big").rglob("metrics.json")).read_text())
    # torch's allocator says "can't allocate memory"; Rust readers (safetensors' mmap) the OS's ENOMEM text
    assert re.search(r"(can't|cannot) allocate memory", metrics["error"], re.I), metrics["error"]
    assert metrics["phase"] in ("setup", "train")
    assert metrics["cpu_peak_rss_gb"] > 0 and sorted(metrics["oom_ranks"])[0] in (0, 1)
    assert readme_row(work, "big").endswith("| OOM |") and readme_row(work, "tiny").endswith("| ok |")
    assert job_counts(run_snakemake(work, "-n").stdout) == {}


def test_crash_from_bad_input_fails_one_cell_and_only_it_reruns(tmp_path, raw_test_config, run_snakemake, repo):
    # a global batch larger than the whole train split: a real error raised by the training job
    work = scenario(
        tmp_path, raw_test_config, {"tiny": TINY, "greedy": {"architecture": TINY, "global_batch_size": 100000}}
    )
    proc = run_snakemake(work, *profile(repo), check=False)
    assert proc.returncode != 0
    rows = summary(work)  # rebuilt by the onerror handler
    assert rows["tiny"]["status"] == "ok" and rows["greedy"]["status"] == "failed"
    assert "ValueError" in rows["greedy"]["note"] and "fewer than one global batch" in rows["greedy"]["note"]
    failure = json.loads(next((work / "results" / "fail" / "runs" / "greedy").rglob("failure.json")).read_text())
    assert failure["rank_errors"] and failure["log_tail"]
    assert readme_row(work, "greedy").endswith("| failed |")
    assert job_counts(run_snakemake(work, "-n").stdout) == ONLY_THE_FAILED_CELL


def rank_pid(model: str, rank: int) -> int | None:
    """The pid of a running training rank of `model`, found by its command line and RANK."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"ftbench.train.job" not in cmdline or f"models/{model}".encode() not in cmdline:
                continue
            env = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"RANK={rank}".encode() in env and b"TORCHELASTIC_RUN_ID" in b"\0".join(env):
            return int(proc.name)
    return None


def test_sigkill_of_one_rank_ends_the_cell_fast_and_only_it_reruns(tmp_path, raw_test_config, run_snakemake, repo):
    work = scenario(
        tmp_path, raw_test_config, {"tiny": TINY, "victim": SLOW}, steps={"warmup": 1, "measure": 400, "eval": 1}
    )
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(repo / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(work / "config.yaml"),
        *profile(repo),
    ]
    snake = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid, deadline = None, time.monotonic() + 240
    while pid is None and time.monotonic() < deadline and snake.poll() is None:
        pid = rank_pid("victim", 1)
        time.sleep(0.5)
    assert pid, "the victim cell never started"
    time.sleep(6)  # past model load: inside the training steps
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    failure = work / "results" / "fail" / "runs" / "victim" / "ddp" / "2gpu" / "full-fp32-bs2-seq64" / "failure.json"
    while not failure.exists() and time.monotonic() < killed + 90:
        time.sleep(0.5)
    assert failure.exists() and time.monotonic() - killed < 60, "the cell did not end within 60 s"
    snake.communicate(timeout=300)
    assert snake.returncode != 0
    rows = summary(work)
    assert rows["tiny"]["status"] == "ok" and rows["victim"]["status"] == "failed"
    assert rows["victim"]["note"].startswith("RankDied: rank 1 ended without a report (SIGKILL)")
    assert job_counts(run_snakemake(work, "-n").stdout) == ONLY_THE_FAILED_CELL


def test_timeout_is_a_result_and_the_rest_completes(tmp_path, raw_test_config, run_snakemake, repo):
    # only the slow model's cells have the 30 s limit (its own cell_timeout_s): however busy the machine,
    # the tiny cell cannot reach a limit, and the slow one (1000 steps) always does
    work = scenario(
        tmp_path,
        raw_test_config,
        {"tiny": TINY, "slow": {"architecture": SLOW, "cell_timeout_s": 30}},
        steps={"warmup": 1, "measure": 1000, "eval": 1},
    )
    start = time.monotonic()
    run_snakemake(work, *profile(repo))
    rows = summary(work)
    assert rows["tiny"]["status"] == "ok" and rows["slow"]["status"] == "timeout"
    assert rows["slow"]["timeout_s"] == 30 and 30 <= rows["slow"]["elapsed_s"] < 60
    assert readme_row(work, "slow").endswith("| timeout |")
    assert time.monotonic() - start < 600
    assert job_counts(run_snakemake(work, "-n").stdout) == {}
