"""A second `snakemake` in a directory where one is running is refused by Snakemake's lock and corrupts
nothing: results/ and README.md are byte for byte what they were, and the first run finishes as usual."""

import subprocess
import sys
import time

import pytest
from test_failures import SLOW, TINY, profile, rank_pid, scenario, summary
from test_workflow import job_counts

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timed]


def test_a_second_run_while_one_runs_is_refused_and_corrupts_nothing(
    tmp_path, raw_test_config, run_snakemake, repo, checksums
):
    work = scenario(
        tmp_path,
        raw_test_config,
        # each cell runs until its limit (holding the lock), then is a `timeout` result; the slow one's 90 s
        # leave the second run time to start and be refused however busy the machine is
        {"tiny": {"architecture": TINY, "cell_timeout_s": 30}, "slow": {"architecture": SLOW, "cell_timeout_s": 90}},
        steps={"warmup": 1, "measure": 100000, "eval": 1},
    )
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(work)]
    cmd += ["--configfile", str(work / "config.yaml"), *profile(repo)]
    first = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while rank_pid("slow", 0) is None and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.5)
        assert rank_pid("slow", 0), "the slow cell never started"
        time.sleep(2)
        before = checksums(work)
        second = run_snakemake(work, *profile(repo), check=False)
        assert rank_pid("slow", 0), "the first run's cell ended while the second ran: nothing was tested"
        assert checksums(work) == before
    finally:
        out, _ = first.communicate(timeout=400)
    output = second.stdout + second.stderr
    assert second.returncode != 0
    assert "LockException" in output or "cannot be locked" in output, output[-3000:]
    assert first.returncode == 0, out[-4000:]  # the first run is unharmed: it finished, tables and all
    assert {row["status"] for row in summary(work).values()} == {"timeout"}
    after = checksums(work)
    runs = {k: v for k, v in before.items() if "/runs/" in k or k.endswith("calibration.json")}
    assert runs and {k: after[k] for k in runs} == runs  # what was computed before is still there, unchanged
    readme = (work / "README.md").read_text()
    assert readme.count("| timeout |") == 2
    assert job_counts(run_snakemake(work, "-n").stdout) == {}  # nothing left incomplete or to redo
