import copy
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / ".test" / "config.yaml"


# a rule's conda env in rules/*.smk: a literal env file, or the training rules' TRAIN_ENV (common.smk)
RULE_ENV = re.compile(r'conda:\s*\n\s*("\.\./envs/[^"]+"|TRAIN_ENV)')


def pip_section(env_file: Path) -> list[str]:
    """The pip lines of a conda env file, as conda hands them to `pip install -r`."""
    deps = yaml.safe_load(env_file.read_text())["dependencies"]
    return next(d["pip"] for d in deps if isinstance(d, dict))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def test_config() -> dict:
    """The CI matrix (.test/config.yaml), validated with defaults filled, as the Snakefile sees it."""
    from ftbench.plan.config_check import validate

    with open(TEST_CONFIG) as f:
        return validate(yaml.safe_load(f), REPO)


def results_checksums(work: Path) -> dict[str, str]:
    """sha256 of README.md and of every file under results/, by relative path: what a refused input must
    leave byte for byte as it was."""
    paths = [work / "README.md", *sorted(p for p in (work / "results").rglob("*") if p.is_file())]
    return {p.relative_to(work).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture
def checksums():
    return results_checksums


@pytest.fixture
def raw_test_config() -> dict:
    with open(TEST_CONFIG) as f:
        return copy.deepcopy(yaml.safe_load(f))


def snakemake(
    workdir: Path, *args: str, configfile: Path | None = None, check: bool = True, snakefile: Path | None = None
):
    """Run the real snakemake CLI (on this repo's Snakefile unless given) with `workdir` as working directory."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(snakefile or REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile or workdir / "config.yaml"),
        *args,
    ]
    if not {"-n", "--dry-run", "--dryrun"} & set(args):  # a dry run creates nothing, and is checked for it
        share_torch_extensions(Path(workdir))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="session")
def run_snakemake():
    return snakemake


# --- A real hub on 127.0.0.1 --------------------------------------------------------------------------------
# huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, at import: they are set here, before any
# test imports it, and every `snakemake` the tests start inherits them. No test touches the user's own cache.
HUB_PORT = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_configure(config):
    global HUB_PORT
    HUB_PORT = _free_port()
    hf_home = Path(tempfile.mkdtemp(prefix="ftbench-hf-home-"))
    config.add_cleanup(lambda: shutil.rmtree(hf_home, ignore_errors=True))
    os.environ.update(
        HF_HOME=str(hf_home),
        HF_ENDPOINT=f"http://127.0.0.1:{HUB_PORT}",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE"):
        os.environ.pop(name, None)
    # DeepSpeed's JIT-built ops (the CPU comm op, CPU Adam: ~30-100 s of g++ each), built once: probes inherit
    # the directory, workflow runs get it linked as their resources/torch_extensions. A directory already set
    # is kept: .ci/run sets one for all its suites, and xdist workers inherit the controller's (torch's build
    # lock lets two processes ask for one op at once)
    if "TORCH_EXTENSIONS_DIR" not in os.environ:
        extensions = Path(tempfile.mkdtemp(prefix="ftbench-torch-extensions-"))
        config.add_cleanup(lambda: shutil.rmtree(extensions, ignore_errors=True))
        os.environ["TORCH_EXTENSIONS_DIR"] = str(extensions)


def share_torch_extensions(workdir: Path) -> None:
    """Point a test workdir's resources/torch_extensions at the session's build of DeepSpeed's ops (what a
    user's second run finds there after the first)."""
    link = workdir / "resources" / "torch_extensions"
    if "TORCH_EXTENSIONS_DIR" in os.environ and not link.exists() and not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.environ["TORCH_EXTENSIONS_DIR"], target_is_directory=True)


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=ftbench tests", "-c", "user.email=tests@ftbench.invalid", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@dataclass
class Hub:
    """The olah server and the git repositories it serves (their working trees are the expected files)."""

    endpoint: str
    mirrors: Path
    commits: dict = field(default_factory=dict)

    def repo(self, repo_type: str, repo_id: str) -> Path:
        return self.mirrors / f"{repo_type}s" / repo_id


def _tiny_model_repo(repo: Path, work: Path) -> dict:
    """acme/tiny-llama: a random 2-layer Llama with its own BPE, saved with save_pretrained, in two commits."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ftbench.data import sources

    sources.prepare_dataset("builtin:customer_support", work / "data", num_rows=300, seed=0)
    sources.train_tokenizer("builtin:bpe-320", work / "data", sources.DEFAULT_TEMPLATE, work / "tok")
    tokenizer = AutoTokenizer.from_pretrained(work / "tok")
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")  # the hub's default branch: with git's `master` nothing resolves
    LlamaForCausalLM(cfg).save_pretrained(repo, safe_serialization=True)
    tokenizer.save_pretrained(repo)
    (repo / "README.md").write_text("# tiny-llama\n")
    (repo / "pytorch_model.bin").write_bytes(b"not fetched: safetensors only")
    (repo / "onnx").mkdir()
    (repo / "onnx" / "config.json").write_text("{}\n")  # sub-folders are not fetched
    v1 = commit_all(repo, "tiny llama")
    git(repo, "tag", "v1")
    config = json.loads((repo / "config.json").read_text())
    (repo / "config.json").write_text(json.dumps({**config, "ftbench_note": "second commit"}, indent=2))
    return {"v1": v1, "main": commit_all(repo, "second commit")}


CHAT = [
    ("How do I cancel order 12?", "Open Order History and choose Cancel."),
    ("Where is my parcel?", "Track it on the Track Order page."),
    ("I forgot my password", "Click Forgot Password and follow the email."),
]


def chat_rows(n: int, offset: int = 0) -> list[dict]:
    rows = []
    for i in range(offset, offset + n):
        q, a = CHAT[i % len(CHAT)]
        q = f"{q} (ticket {i})"
        rows.append({"prompt": q, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    return rows


def _tiny_chat_repo(repo: Path) -> dict:
    """acme/tiny-chat: UltraChat's layout, parquet shards per split under data/, plus a README."""
    import polars as pl

    (repo / "data").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    shards = {"train-00000-of-00002": (0, 40), "train-00001-of-00002": (40, 40), "test-00000-of-00001": (80, 10)}
    for name, (offset, n) in shards.items():
        pl.DataFrame(chat_rows(n, offset)).write_parquet(repo / "data" / f"{name}.parquet")
    (repo / "README.md").write_text("---\nlicense: mit\n---\n# tiny-chat\n")
    return {"main": commit_all(repo, "tiny chat")}


@pytest.fixture(scope="session")
def hub(tmp_path_factory) -> Hub:
    """A real hub-compatible server (olah, offline mode) on 127.0.0.1 serving git repos built here."""
    root = tmp_path_factory.mktemp("hub")
    result = Hub(endpoint=os.environ["HF_ENDPOINT"], mirrors=root / "mirrors")
    result.commits["acme/tiny-llama"] = _tiny_model_repo(result.repo("model", "acme/tiny-llama"), root / "work")
    result.commits["acme/tiny-chat"] = _tiny_chat_repo(result.repo("dataset", "acme/tiny-chat"))
    netloc = f"127.0.0.1:{HUB_PORT}"
    (root / "olah.toml").write_text(
        "[basic]\n"
        f'host = "127.0.0.1"\nport = {HUB_PORT}\nmirror-scheme = "http"\n'
        f'mirror-netloc = "{netloc}"\nmirror-lfs-netloc = "{netloc}"\n'
        f'repos-path = "{root / "cache"}"\nmirrors-path = ["{result.mirrors}"]\n'
        "[accessibility]\noffline = true\n"
    )
    olah_cli = shutil.which("olah-cli", path=str(Path(sys.executable).parent)) or "olah-cli"
    log = open(root / "olah.out", "w")  # noqa: SIM115 (closed at teardown)
    server = subprocess.Popen(
        [olah_cli, "-c", "olah.toml", "--log-path", str(root / "logs")], cwd=root, stdout=log, stderr=subprocess.STDOUT
    )
    ready = f"{result.endpoint}/api/models/acme/tiny-llama/revision/main"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"olah exited with {server.returncode}:\n{(root / 'olah.out').read_text()}")
            try:
                with urllib.request.urlopen(ready, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"olah not ready after 60 s:\n{(root / 'olah.out').read_text()}")
            time.sleep(0.25)
        yield result
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
