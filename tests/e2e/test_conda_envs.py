"""Each per-rule conda env, as `--sdm conda` builds it, runs its own rules. conda channels are not reachable
from CI, so each env's pip section is installed as written (conda writes it to a requirements file and runs
`pip install -r`) into a fresh venv, then its post-deploy hook (envs/install-ftbench.sh, the ftbench line)
runs in it. Two checks per env:
- with only that, every ftbench module its rules run imports (what a `shell:` rule's `python -m` gets);
- with snakemake added (a `script:` rule's preamble finds the driver's snakemake), the real workflow runs in
  stages from that env's interpreter, and each stage runs only rules that declare that env.
"""

import ast
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import RULE_ENV, pip_section, share_torch_extensions
from test_workflow import job_counts

from ftbench.plan import builds

pytestmark = pytest.mark.envs

RUN = "envs"
# hardware.device: cpu, so TRAIN_ENV is the CPU build's env
ENVS = ("hub", "train-cpu", "analysis")
NO_RETRIES = {"PIP_RETRIES": "0"}
RULE = re.compile(r"^\s*rule (\w+):(.*?)(?=^\s*rule \w+:|\Z)", re.M | re.S)


def rule_bodies(repo: Path) -> dict[str, str]:
    """{rule: its text} over every rules/*.smk."""
    return {name: body for smk in (repo / "rules").glob("*.smk") for name, body in RULE.findall(smk.read_text())}


def rule_envs(repo: Path) -> dict[str, str]:
    """{rule: env name} from the rules' `conda:` directives."""
    envs = {}
    for name, body in rule_bodies(repo).items():
        env = RULE_ENV.search(body)[1]
        envs[name] = "train-cpu" if env == "TRAIN_ENV" else Path(env.strip('"')).stem
    return envs


def rule_modules(repo: Path, body: str) -> set[str]:
    """The ftbench modules a rule runs: its shell's `python -m` module, or its script's ftbench imports."""
    body = body.replace("BUILD_COMMAND", builds.BUILD_COMMAND)  # the builder rules' shell command
    if script := re.search(r'script:\s*\n\s*"\.\./(scripts/\w+\.py)"', body):
        tree = ast.parse((repo / script[1]).read_text())
        found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        found |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        return {m for m in found if m.startswith("ftbench")}
    return set(re.findall(r"python -m (ftbench[\w.]*)", body))


def env_vars(venv: Path, extra_env: dict | None = None) -> dict[str, str]:
    """The environment of this env's processes: its bin/ first on PATH, without PYTHONPATH (as Snakemake runs
    a conda job)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "FTBENCH_SRC")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    return {**env, **(extra_env or {})}


def env_python(venv: Path, *args: str, extra_env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    cmd = [str(venv / "bin" / "python"), *args]
    return subprocess.run(cmd, env=env_vars(venv, extra_env), capture_output=True, text=True, cwd=cwd)


def env_pip(venv: Path, *args: str) -> subprocess.Popen:
    """`pip install` in this env, started, not waited for."""
    cmd = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args]
    env = env_vars(venv, NO_RETRIES)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(pips: dict[str, subprocess.Popen]) -> None:
    for name, pip in pips.items():
        out, _ = pip.communicate()
        assert pip.returncode == 0, f"env {name}: {out[-6000:]}"


@pytest.fixture(scope="module")
def venvs(repo, tmp_path_factory) -> dict[str, Path]:
    """One fresh venv per env, their pip sections installed side by side: pip mostly waits on the index and
    unpacks, and the CPU-bound tests come after."""
    root = tmp_path_factory.mktemp("envs")
    made, pips = {}, {}
    for name in ENVS:
        venv = root / name
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        requirements = root / f"{name}.requirements.txt"
        requirements.write_text("\n".join(pip_section(repo / "envs" / f"{name}.yaml")) + "\n")
        # train-cpu's PyTorch index is unreachable here: one try per package, not pip's backoff (7 min)
        pips[name] = env_pip(venv, "-r", str(requirements))
        made[name] = venv
    finish(pips)
    for name, venv in made.items():
        hook = subprocess.run(
            ["bash", str(repo / "envs" / f"{name}.post-deploy.sh")],
            env={**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"},
            capture_output=True,
            text=True,
        )
        assert hook.returncode == 0, hook.stderr
    return made


def test_each_env_imports_every_module_its_rules_run(repo, venvs):
    by_env: dict[str, set[str]] = {}
    bodies = rule_bodies(repo)
    for rule, env in rule_envs(repo).items():
        by_env.setdefault(env, set()).update(rule_modules(repo, bodies[rule]))
    assert set(by_env) == set(ENVS)
    assert {"ftbench.launch", "ftbench.data"} <= by_env["train-cpu"] and "ftbench.data" in by_env["hub"]
    assert "ftbench.report.compare" in by_env["analysis"]
    for env, modules in by_env.items():
        code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
        # FTBENCH_SRC as the Snakefile exports it to every job; no PYTHONPATH, as Snakemake runs conda jobs
        run = env_python(venvs[env], "-c", code, *sorted(modules), extra_env={"FTBENCH_SRC": str(repo / "src")})
        assert run.returncode == 0, f"env {env}: {run.stderr[-3000:]}"
        # and without FTBENCH_SRC the env has no ftbench: the import above came from the checkout
        bare = env_python(venvs[env], "-c", "import ftbench")
        assert bare.returncode != 0 and "No module named 'ftbench'" in bare.stderr, env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, hub):
    work = tmp_path_factory.mktemp("envs-work")
    config = {
        "run_name": RUN,
        "dataset": {"name": "support", "source": "builtin:customer_support", "num_rows": 300},
        "models": [
            {"name": "hub-llama", "source": "hf:acme/tiny-llama"},
            {
                "name": "tiny",
                "source": "config:llama",
                "tokenizer": "builtin:bpe-512",
                "architecture": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
            },
        ],
        "matrix": {"strategies": ["zero2"], "gpus": [1], "seq_len": [64]},  # torch.distributed and DeepSpeed
        "hardware": {"device": "cpu"},
        "batch_size_per_gpu": 2,
        "steps": {"warmup": 1, "measure": 2, "eval": 1},
        "generation": {"prompt_tokens": 8, "new_tokens": 4},
        "report": {"readme": "README.md", "docs_dir": "docs"},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    (work / "README.md").write_text("# envs run\n")
    share_torch_extensions(work)
    return work


def stage(repo, venv: Path, work: Path, *args: str) -> dict[str, int]:
    """The workflow from this env's interpreter; {rule: jobs} it ran."""
    run = env_python(
        venv,
        *("-m", "snakemake", *args, "-s", str(repo / "Snakefile"), "--directory", str(work)),
        *("--profile", str(repo / "profiles" / "local"), "--configfile", str(work / "config.yaml")),
        # the driver imports ftbench too (pip install -e . in a user's venv); here it is this env's python
        extra_env={"FTBENCH_SRC": str(repo / "src")},
        cwd=work,
    )
    assert run.returncode == 0, f"{venv.name}: {run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    return job_counts(run.stderr)


def test_the_workflow_runs_each_envs_rules_from_that_env(repo, venvs, workdir, hub):
    envs = rule_envs(repo)
    # the driver's snakemake, as a script rule's preamble finds it
    finish({name: env_pip(venv, f"snakemake=={version('snakemake')}") for name, venv in venvs.items()})
    # what the hub env's rules make, then what the train env's make from it, then the rest
    cells = [f"{m}/zero2/1gpu/full-fp32-bs2-seq64" for m in ("hub-llama", "tiny")]
    ran = {
        "hub": stage(repo, venvs["hub"], workdir, "--until", "prepare_dataset", "download_model"),
        "train-cpu": stage(
            repo,
            venvs["train-cpu"],
            workdir,
            f"results/{RUN}/calibration.json",
            *(f"results/{RUN}/runs/{c}/metrics.json" for c in cells),
        ),
        "analysis": stage(repo, venvs["analysis"], workdir),
    }
    for env, jobs in ran.items():
        assert jobs and all(envs[rule] == env for rule in jobs if rule != "all"), (env, jobs)
    assert ran["train-cpu"]["train_cell"] == 2 and {"render_report", "aggregate_metrics"} <= set(ran["analysis"])
    summary = pl.read_csv(workdir / "results" / RUN / "summary.csv", infer_schema_length=None)
    assert summary["status"].to_list() == ["ok"] * 2, summary.select("cell_id", "status", "note")
    compare = stage(
        repo, venvs["analysis"], workdir, "compare", "--config", f"compare={{reference: results/{RUN}/summary.csv}}"
    )
    assert compare == {"compare": 1}
