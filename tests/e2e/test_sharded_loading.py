"""A model that does not fit one rank: each strategy loads, shards and trains within what it promises.

A ~65M-parameter Llama in Hugging Face format (safetensors + tokenizer, 0.24 GB in fp32) trained by the real
launcher at 4 ranks. Per-rank setup peaks (VmHWM up to the moment the weights are in place) against the same
cell's process with a tiny model; losses against plain `from_pretrained` in one process; LoRA under the real
per-rank memory limit set below one fp32 replica.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftbench.cell import Cell
from ftbench.data import sources, tokcache
from ftbench.plan.estimate import estimate
from ftbench.plan.matrix import job_spec
from ftbench.plan.model_shape import Shape

pytestmark = [pytest.mark.e2e, pytest.mark.memory]

TEMPLATE = "{instruction}\n{response}"
SEQ, WORLD = 64, 4
TINY = {"hidden_size": 32, "num_layers": 4, "num_heads": 2, "intermediate_size": 64, "max_positions": 128}
# ~65M parameters (0.24 GB fp32): the smallest size at which a rank that reads the whole model still clears
# the sharded bound by ~0.1 GB (tests/dist/broken_loader shows those assertions failing with such a loader)
BIG = {"hidden_size": 640, "num_layers": 12, "num_heads": 10, "intermediate_size": 1728, "max_positions": 128}
# ~120M (0.45 GB fp32) for LoRA under a limit below one replica: ZeRO-3's buffers do not shrink with the model,
# and at ~65M a limit below the replica (0.85 x 0.24 GB) leaves them too little
LORA = {"hidden_size": 768, "num_layers": 16, "num_heads": 12, "intermediate_size": 2048, "max_positions": 128}
REFERENCE = Path(__file__).parents[1] / "dist" / "reference.py"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    sources.prepare_dataset("builtin:customer_support", root / "data", 3000, 0)
    sources.train_tokenizer("builtin:bpe-4096", root / "data", TEMPLATE, root / "tok")
    tokcache.build(root / "data", root / "tok", root / "cache", TEMPLATE, SEQ, 0.1, 0)
    for name, arch in (("tiny", TINY), ("big", BIG), ("lora", LORA)):
        model = {"name": name, "source": "config:llama", "architecture": arch}
        sources.prepare_model(model, root / "tok", root / name, 0)
    return root


def spec_of(strategy: str, model: str, method: str = "full", gpus: int = WORLD) -> dict:
    config = {
        "run_name": "sharded",
        "seed": 0,
        "steps": {"warmup": 1, "measure": 3, "eval": 1},
        "optimizer": {"lr": 1e-3, "weight_decay": 0.0, "max_grad_norm": 1.0},
        "generation": {"prompt_tokens": 8, "new_tokens": 2},
        "options": {},
        "hardware": {"device": "cpu", "cpu_threads_per_rank": 1},
    }
    return job_spec(config, Cell(model, strategy, gpus, method, "fp32", 1, SEQ, WORLD))


@pytest.fixture(scope="module")
def cell(work):
    """Run a cell through `python -m ftbench.launch` (the train rule's program); its metrics.json."""
    done = {}

    def run(strategy: str, model: str = "big", method: str = "full", cpu_memory_gb: float = 0) -> dict:
        key = (strategy, model, method, cpu_memory_gb)
        if key not in done:
            out = work / "runs" / "-".join(map(str, key)) / "metrics.json"
            out.parent.mkdir(parents=True)
            spec = spec_of(strategy, model, method)
            cmd = [
                sys.executable,
                "-m",
                "ftbench.launch",
                "--gpus",
                str(WORLD),
                "--log",
                str(out.with_suffix(".log")),
            ]
            cmd += ["--cpu-memory-mb", str(int(cpu_memory_gb * 1024)), "--"]
            cmd += ["--spec", json.dumps(spec), "--model", str(work / model), "--cache", str(work / "cache")]
            # DeepSpeed's ops build into the session's TORCH_EXTENSIONS_DIR (tests/conftest.py)
            proc = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=900)
            log = out.with_suffix(".log")
            assert proc.returncode == 0 and out.exists(), proc.stderr[-3000:] + log.read_text()[-4000:]
            done[key] = json.loads(out.read_text())
        return done[key]

    return run


def shape_of(model_dir: Path) -> Shape:
    return Shape.from_config_json(json.loads((model_dir / "config.json").read_text()))


def model_gb(metrics: dict) -> float:
    return metrics["params_total"] * 4 / 2**30


def setup_peaks(metrics: dict) -> list[float]:
    return [rank["setup_host_peak_gb"] for rank in metrics["memory_per_rank"]]


@pytest.mark.parametrize("strategy", ["fsdp", "zero3"])
def test_a_sharded_rank_never_holds_more_than_its_shard(cell, strategy):
    big, tiny = cell(strategy), cell(strategy, "tiny")
    assert big["status"] == "ok" and 60e6 < big["params_total"] < 70e6
    for rank, (peak, baseline) in enumerate(zip(setup_peaks(big), setup_peaks(tiny), strict=True)):
        assert peak <= 1.3 * (baseline + model_gb(big) / WORLD), f"rank {rank}: {peak:.3f} GB at setup"


def test_a_pipeline_stage_holds_its_own_layers(work, cell):
    big, tiny = cell("pipeline"), cell("pipeline", "tiny")
    shape = shape_of(work / "big")
    assert shape.params == big["params_total"]
    for rank, (peak, baseline) in enumerate(zip(setup_peaks(big), setup_peaks(tiny), strict=True)):
        held = shape.stage_params(rank, WORLD)
        assert peak <= 1.3 * (baseline + held * 4 / 2**30), f"stage {rank}: {peak:.3f} GB at setup"
    # the stages with an embedding table hold more than those without
    peaks = setup_peaks(big)
    assert min(peaks[0], peaks[-1]) > max(peaks[1:-1])


def test_ddp_holds_a_full_replica(cell):
    big, tiny = cell("ddp"), cell("ddp", "tiny")
    for peak, baseline in zip(setup_peaks(big), setup_peaks(tiny), strict=True):
        assert peak >= baseline + 0.9 * model_gb(big)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "zero3", "pipeline"])
def test_the_memory_estimate_is_within_20_percent_of_the_training_peak(work, cell, strategy):
    """ftbench.plan.estimate, before anything runs, against the largest rank's VmHWM over the training steps."""
    shape = shape_of(work / "big")
    predicted = estimate(shape, Cell("big", strategy, WORLD, "full", "fp32", 1, SEQ, WORLD), "cpu", {})
    assert predicted.gb == pytest.approx(cell(strategy)["train_peak_memory_gb"], rel=0.2)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "zero3", "pipeline"])
def test_every_loading_path_trains_the_reference_model(work, cell, strategy):
    out = work / "reference.json"
    if not out.exists():
        spec = json.dumps(spec_of("ddp", "big", gpus=1))
        subprocess.run(
            [sys.executable, str(REFERENCE), spec, str(work / "big"), str(work / "cache"), str(out)], check=True
        )
    reference = json.loads(out.read_text())["losses"]
    losses = cell(strategy)["losses"]
    assert len(losses) == len(reference) == 4
    assert max(abs(a - b) for a, b in zip(losses, reference, strict=True)) <= 1e-3


def test_lora_fits_under_a_limit_below_one_replica_only_when_sharded(work, cell):
    """The real per-rank limit (limits.cpu_memory_per_rank_gb) set below the fp32 model: fsdp and zero3
    finish, ddp runs out of memory while it loads its replica."""
    shape = shape_of(work / "lora")
    limit = 0.85 * shape.params * 4 / 2**30
    for strategy in ("fsdp", "zero3"):
        metrics = cell(strategy, "lora", method="lora", cpu_memory_gb=limit)
        assert metrics["status"] == "ok", (strategy, metrics.get("error"))
        assert metrics["params_trainable"] == 16 * 4 * 2 * 8 * 768  # r=8 A and B on q, k, v, o of 16 layers
        assert metrics["params_total"] == shape.params + metrics["params_trainable"]
    oom = cell("ddp", "lora", method="lora", cpu_memory_gb=limit)
    assert oom["status"] == "oom" and oom["phase"] == "setup", oom  # loading its replica


def test_deepspeeds_ops_are_built_before_the_memory_limit(work, tmp_path):
    """The first ZeRO cell of a workflow builds DeepSpeed's ops (g++ inherits the rank's limits): they are
    runtime, built and loaded before a rank's budget starts, so a cell under a limit builds them too."""
    out = tmp_path / "metrics.json"
    cmd = [
        sys.executable,
        "-m",
        "ftbench.launch",
        "--gpus",
        "2",
        "--log",
        str(tmp_path / "log"),
        "--cpu-memory-mb",
    ]
    cmd += ["300", "--", "--spec", json.dumps(spec_of("zero2_offload", "tiny", gpus=2)), "--model", str(work / "tiny")]
    cmd += ["--cache", str(work / "cache"), "--out", str(out)]
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "fresh_extensions")}  # nothing built yet
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0 and json.loads(out.read_text())["status"] == "ok", proc.stdout[-3000:]
    assert {p.name for p in (tmp_path / "fresh_extensions").iterdir()} >= {"deepspeed_shm_comm", "cpu_adam"}
