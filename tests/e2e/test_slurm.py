"""`snakemake --profile profiles/slurm` on a real two-node Slurm cluster (tests/slurm/cluster.sh, as root).

One run of a tiny CPU matrix: 1 GPU, 2 GPUs on one node and 4 GPUs as 2 nodes x 2 (srun, c10d rendezvous,
gloo across two network namespaces), plus one cell that fails on purpose. The sbatch lines come from the
executor plugin's own verbose log; Slurm's own records (sacct) say where each job ran. A second run after
fixing the failed cell's input submits that cell and nothing else.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import helpers
import pytest
import yaml

from ftbench.launch import slurm
from ftbench.report import aggregate, tables

pytestmark = pytest.mark.slurm

RUN = "slurm-ci"
TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 128}
SBATCH = re.compile(r"^sbatch call: (sbatch .*?) --wrap=", re.M)


@pytest.fixture(scope="module")
def cluster(repo):
    script = repo / "tests" / "slurm" / "cluster.sh"
    subprocess.run(["bash", str(script), "start"], check=True)
    conf = subprocess.run(["bash", str(script), "env"], check=True, capture_output=True, text=True).stdout
    saved = dict(os.environ)
    os.environ.update(line.split("=", 1) for line in conf.split())
    # gloo picks the interface the nodes reach each other on (the node hostnames resolve to loopback here)
    os.environ["GLOO_SOCKET_IFNAME"] = "ftb0"
    yield
    os.environ.clear()
    os.environ.update(saved)
    subprocess.run(["bash", str(script), "stop"], check=False)


def slurm_snakemake(repo, workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [
        *(sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir)),
        *("--profile", str(repo / "profiles" / "slurm")),
        *("--workflow-profile", str(repo / "tests" / "slurm" / "profile")),
        "--verbose",
        *args,
    ]
    # Snakemake ignores SIGTERM while jobs run: a stuck run is stopped with SIGINT, which cancels its jobs
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(2)
        out, _ = proc.communicate()
        raise AssertionError(f"snakemake on Slurm did not finish in {timeout} s:\n{out[-6000:]}") from None
    (workdir / f"snakemake-{time.monotonic_ns()}.log").write_text(out)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def sbatch_lines(output: str) -> dict[str, str]:
    """{comment: sbatch line} of every job the plugin submitted (the comment names rule and wildcards)."""
    return {re.search(r"--comment (\S+)", line)[1]: line for line in SBATCH.findall(output)}


def job_comment(model: str, gpus: int) -> str:
    """The plugin's job comment for a train_cell job: rule and wildcards joined by "_", the last wildcard being
    the optional id segments (empty for these cells, hence the trailing "_")."""
    return f"rule_train_cell_wildcards_{model}_ddp_{gpus}_full_fp32_2_64_"


def summary(workdir: Path) -> dict[str, dict]:
    return helpers.summary(workdir, RUN)


def cell(model: str, gpus: int) -> str:
    return f"{model}/ddp/{gpus}gpu/full-fp32-bs2-seq64"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, raw_test_config):
    work = tmp_path_factory.mktemp("slurm")
    config = {
        **raw_test_config,
        "run_name": RUN,
        "models": [
            {"name": "tiny-llama", "source": "config:llama", "tokenizer": "builtin:bpe-512", "architecture": TINY},
            # fails on purpose: a global batch far beyond the data (fixed before the second run)
            {
                "name": "tiny-b",
                "source": "config:llama",
                "tokenizer": "builtin:bpe-512",
                "architecture": TINY,
                "global_batch_size": 800000,
            },
        ],
        # fsdp_tp runs at 4 (2 nodes x 2: TP 2 inside a node, FSDP across), is pruned below
        "matrix": {"strategies": ["ddp", "fsdp_tp"], "gpus": [1, 2, 4], "seq_len": [64]},
        "global_batch_size": 8,
        "select": ["tiny-llama/*", cell("tiny-b", 2)],
        "hardware": {"device": "cpu", "gpus_per_node": 2, "gpu_gres": "gpu", "host_memory_per_rank_gb": 1},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    begin, end = tables.markers(RUN)
    (work / "README.md").write_text(f"# cluster notes\n\n{begin}\n{end}\n")
    return work


@pytest.fixture(scope="module")
def raw_test_config(repo):
    return yaml.safe_load((repo / ".test" / "config.yaml").read_text())


@pytest.fixture(scope="module")
def sleeping_job(cluster, tmp_path_factory) -> str:
    """A job past its 1-minute limit, submitted before the workflow runs, so that Slurm's clock runs out while
    the workflow's jobs run instead of in a wait of its own."""
    logs = tmp_path_factory.mktemp("sleeping-job")
    return subprocess.run(
        ["sbatch", "--parsable", "-A", "root", "-t", "1", "-o", str(logs / "%j.log"), "--wrap", "sleep 600"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def first_run(cluster, sleeping_job, repo, workdir):
    return slurm_snakemake(repo, workdir)


def test_preview_lists_cells_nodes_and_gpu_hours(cluster, repo, workdir):
    out = slurm_snakemake(repo, workdir, "preview").stdout
    row = rf"\| {re.escape(cell('tiny-llama', 4))} \| 2 x 2 \| 1\.17 \| 4\.67 \| \d+\.\d\d \| new \|"
    assert re.search(row, out), out
    assert f"| {cell('tiny-llama', 2)} | 1 x 2 |" in out
    # 13 GPUs (1 + 2 + 4 + fsdp_tp's 4 + tiny-b's 2), each for the 70 min limit (60 min cell timeout + 10 min
    # start-up); fsdp_tp at 1 and 2 GPUs of both models pruned
    assert "5 of 5 selected cells to run (4 pruned), largest job 2 node(s); at most 15.2 GPU-hours" in out
    assert "sbatch call" not in out  # a localrule: nothing is submitted


def test_sbatch_lines_ask_nodes_and_gpus_per_node(first_run):
    lines = sbatch_lines(first_run.stdout)
    one, two, four = (lines[job_comment("tiny-llama", g)] for g in (1, 2, 4))
    assert "--nodes=1 " in one and "--gres=gpu:1" in one and "--cpus-per-task=1" in one and "--mem 1024" in one
    assert "--nodes=1 " in two and "--gres=gpu:2" in two and "--cpus-per-task=2" in two and "--mem 2048" in two
    # 4 GPUs on 2-GPU nodes: whole nodes, GPUs per node, one task per node, cpus and memory per node
    assert "--nodes=2 --ntasks=2 " in four and "--gres=gpu:2" in four and "--cpus-per-task=2" in four
    for line in (one, two, four):
        assert "-p debug" in line and "-A root" in line and "-t 70" in line
        assert "--ntasks-per-gpu" not in line and "--gpus=" not in line
    # downloads, aggregation, the README and the preview run on the submitting host, never queued
    assert not any(re.search(r"rule_(download|aggregate|render|preview)", c) for c in lines), lines.keys()
    assert {c.split("_wildcards")[0] for c in lines} == {
        "rule_prepare_dataset",
        "rule_train_tokenizer",
        "rule_build_token_cache",
        "rule_prepare_model",
        "rule_calibrate_device",
        "rule_train_cell",
    }


def test_cells_ran_on_the_nodes_slurm_gave_them(first_run, workdir):
    rows = summary(workdir)
    for gpus in (1, 2, 4):
        assert rows[cell("tiny-llama", gpus)]["status"] == "ok"
    runs = workdir / "results" / RUN / "runs"
    job = json.loads((runs / cell("tiny-llama", 4) / "job.json").read_text())["slurm"]
    assert job["nodelist"] == "n[1-2]"
    assert slurm.job_state(job["job_id"]) == "COMPLETED"
    log = (workdir / "logs" / RUN / "train_cell" / f"{cell('tiny-llama', 4)}.log").read_text()
    # each node's task gets its 2 ranks' CPUs (srun does not inherit the job's --cpus-per-task). Binding itself
    # is not shown: the fixture's nodes advertise 8 CPUs on a 2-core machine, which task/affinity cannot bind
    assert "srun --kill-on-bad-exit=1 --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=2 " in log
    # the same tokens and global batch: 2 nodes x 2 ranks trains exactly like 1 and 2 ranks on one node
    losses = {g: json.loads((runs / cell("tiny-llama", g) / "metrics.json").read_text()) for g in (1, 2, 4)}
    for gpus in (2, 4):
        assert losses[gpus]["gpus"] == gpus
        assert losses[gpus]["losses"] == pytest.approx(losses[1]["losses"], rel=1e-4)


def test_a_tp_group_never_crosses_a_node(first_run, workdir):
    """fsdp_tp on 2 nodes x 2: each TP group's ranks ran on one host (torchrun numbers ranks node by node and
    the mesh puts TP innermost), the data-parallel groups span both, and it trains like ddp on the same tokens."""
    runs = workdir / "results" / RUN / "runs"
    tp_cell = "tiny-llama/fsdp_tp/4gpu/full-fp32-bs2-seq64"
    metrics = json.loads((runs / tp_cell / "metrics.json").read_text())
    mesh, hosts = metrics["device_mesh"], metrics["device_mesh"]["hosts"]
    assert mesh["dims"] == {"dp": 2, "tp": 2} and len(set(hosts)) == 2, mesh
    assert all(len({hosts[r] for r in group}) == 1 for group in mesh["groups"]["tp"]), mesh
    assert all(len({hosts[r] for r in group}) == 2 for group in mesh["groups"]["dp"]), mesh
    ddp = json.loads((runs / cell("tiny-llama", 4) / "metrics.json").read_text())
    assert metrics["losses"] == pytest.approx(ddp["losses"], abs=1e-3)


def test_failed_cell_is_a_row_and_the_rest_of_the_table_stands(first_run, workdir):
    assert first_run.returncode != 0  # the planted failure fails the run (after every other job finished)
    rows = summary(workdir)
    failed = rows[cell("tiny-b", 2)]
    assert failed["status"] == "failed" and "global" in failed["note"].lower(), failed["note"]
    assert rows[cell("tiny-b", 1)]["status"] == "pending"  # not selected: listed, not run
    readme = (workdir / "README.md").read_text()
    assert readme.startswith("# cluster notes\n") and "#### tiny-llama" in readme and "#### tiny-b" in readme


def test_rerun_submits_only_the_failed_cell(first_run, repo, workdir):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["models"][1].pop("global_batch_size")  # the fix
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    second = slurm_snakemake(repo, workdir)
    assert second.returncode == 0, second.stdout[-4000:]
    assert list(sbatch_lines(second.stdout)) == [job_comment("tiny-b", 2)]
    assert summary(workdir)[cell("tiny-b", 2)]["status"] == "ok"


def test_slurm_timeout_of_a_job_becomes_a_timeout_row(sleeping_job, first_run, tmp_path):
    """A job Slurm itself ends at its time limit (sacct TIMEOUT) is a timeout row, traced by its job.json."""
    job_id = sleeping_job
    cell_dir = tmp_path / "runs" / cell("tiny-llama", 1)
    cell_dir.mkdir(parents=True)
    (cell_dir / "job.json").write_text(json.dumps({"slurm": {"job_id": job_id, "nodelist": "n1"}}))
    deadline = time.monotonic() + 240
    while slurm.job_state(job_id) in (None, "PENDING", "RUNNING") and time.monotonic() < deadline:
        time.sleep(5)
    assert slurm.job_state(job_id) == "TIMEOUT"
    row = aggregate.slurm_row(helpers.record(cell("tiny-llama", 1)), cell_dir / "job.json")
    assert row["status"] == "timeout" and row["slurm_state"] == "TIMEOUT" and "time limit" in row["note"]


def test_a_job_knows_its_time_left(cluster, tmp_path):
    """What the launcher's deadline reads inside a job: squeue's time left for the job's own id."""
    probe = "import os; from ftbench.launch import slurm; print(slurm.job_time_left(dict(os.environ)))"
    out = subprocess.run(
        ["srun", "-A", "root", "-t", "5", sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    assert 240 <= float(out) <= 300
