"""Each strategy is what it says: same losses on the same tokens, and each rank holds what it should.

Runs tests/dist/probe.py under real torchrun (gloo processes) through the real ftbench strategy code."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftbench.data import sources, tokcache
from ftbench.plan.model_shape import Shape

pytestmark = pytest.mark.e2e

PROBE = os.path.join(os.path.dirname(__file__), "..", "dist", "probe.py")
STRATEGIES = ["fsdp", "fsdp_offload", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload", "pipeline"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    sources.prepare_dataset("builtin:customer_support", root / "data", 300, 0)
    sources.train_tokenizer("builtin:bpe-400", root / "data", "{instruction}\n{response}", root / "tok")
    arch = {"hidden_size": 32, "num_layers": 4, "num_heads": 4, "intermediate_size": 64, "max_positions": 64}
    sources.prepare_model(
        {"name": "m", "source": "config:llama", "architecture": arch}, root / "tok", root / "model", 0
    )
    tokcache.build(root / "data", root / "tok", root / "cache", "{instruction}\n{response}", 32, 0.2, 0)
    return root


def probe_key(strategy, world=2, method="full", precision="fp32", steps=5, options=None) -> tuple:
    return (strategy, world, method, precision, steps, json.dumps(options or {}, sort_keys=True))


WARMUP = {"optimizer": {"warmup_steps": 4}}
CHECKPOINTED = {"activation_checkpointing": "full"}
# what each test runs, named once for its parametrize and for PLANNED
WARMUP_STRATEGIES = ["zero2", "pipeline"]
LORA_STRATEGIES = ["fsdp", "zero3", "pipeline"]
BF16_STRATEGIES = ["ddp", "fsdp", "zero2", "pipeline", "tp"]
FP16_STRATEGIES = ["ddp", "fsdp"]
COMPILED = [("ddp", 1), ("ddp", 2), ("fsdp", 2)]
CHECKPOINTED_STRATEGIES = ["ddp", "fsdp", "zero3", "pipeline", "tp"]
MESH_STRATEGIES = {"tp": {}, "fsdp_tp": {}, "hsdp": {}, "fsdp_tp-1x4": {"tp_degree": 4}}
# Every run the tests below ask for. A launch runs all the planned runs of one strategy and world size in one
# process group (tests/dist/probe.py), so a rank starts torch, transformers and DeepSpeed once, not once per
# run; a run not planned here still runs, in a launch of its own. Each key once (dict.fromkeys).
PLANNED = list(
    dict.fromkeys(
        [
            *(probe_key(s) for s in ["ddp", *STRATEGIES, "tp"]),
            *(probe_key(s, options=WARMUP) for s in ["ddp", *WARMUP_STRATEGIES]),
            *(probe_key(s, method="lora", steps=3) for s in ["ddp", *LORA_STRATEGIES]),
            *(probe_key(s, precision="bf16", steps=3) for s in BF16_STRATEGIES),
            probe_key("zero3", method="lora", precision="bf16", steps=3),
            *(probe_key(s, precision="fp16", steps=3) for s in FP16_STRATEGIES),
            *(probe_key(s, world=w) for s, w in COMPILED),
            *(probe_key(s, world=w, options={s: {"compile": True}}) for s, w in COMPILED),
            *(probe_key(s, options=CHECKPOINTED) for s in CHECKPOINTED_STRATEGIES),
            probe_key("fsdp", method="lora", steps=3, options=CHECKPOINTED),
            probe_key("ddp", world=4),
            *(probe_key(name.split("-")[0], world=4, options=options) for name, options in MESH_STRATEGIES.items()),
        ]
    )
)


@pytest.fixture(scope="module")
def probe(assets):
    results = {}

    def launch(world: int, keys: list[tuple]) -> None:
        runs = []
        for key in keys:
            strategy, _, method, precision, steps, options = key
            out = assets / "runs" / "-".join(map(str, key[:-1])) / str(len(results) + len(runs))
            gbs = max(4, 2 * world)  # global batch: 2 per data-parallel rank of ddp
            runs.append(dict(strategy=strategy, method=method, precision=precision, steps=steps, gbs=gbs, bs=2,
                             out_dir=str(out), options=json.loads(options)))  # fmt: skip
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}", PROBE]
        cmd += [str(assets / "model"), str(assets / "cache"), json.dumps(runs)]
        # DeepSpeed's ops build into the session's TORCH_EXTENSIONS_DIR (tests/conftest.py)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        for key, run in zip(keys, runs, strict=True):
            results[key] = [json.loads((Path(run["out_dir"]) / f"rank{r}.json").read_text()) for r in range(world)]

    def run(*args, **kwargs):
        key = probe_key(*args, **kwargs)
        if key not in results:
            planned = [k for k in PLANNED if k[:2] == key[:2] and k not in results and k != key]
            launch(key[1], [key, *planned])
        return results[key]

    return run


def test_ddp_agrees_with_itself_at_world_1_and_2(probe):
    one, two = probe("ddp", world=1)[0]["losses"], probe("ddp")[0]["losses"]
    assert one == pytest.approx(two, abs=1e-4)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_has_ddps_loss_trajectory(probe, strategy):
    reference = probe("ddp")[0]["losses"]
    for rank in probe(strategy):
        assert len(rank["losses"]) == 5
        assert max(abs(a - b) for a, b in zip(rank["losses"], reference, strict=True)) <= 1e-3
    assert reference[-1] < reference[0] - 0.3  # and it is learning


@pytest.mark.parametrize("strategy", WARMUP_STRATEGIES)
def test_a_warmup_schedule_reaches_each_strategys_optimizer(probe, strategy):
    """DeepSpeed's engine and the pipeline schedule step their own optimizers: each follows the warm-up."""
    reference, constant = probe("ddp", options=WARMUP)[0]["losses"], probe("ddp")[0]["losses"]
    assert abs(reference[2] - constant[2]) > 0.05  # a smaller rate at first trains less
    for rank in probe(strategy, options=WARMUP):
        assert max(abs(a - b) for a, b in zip(rank["losses"], reference, strict=True)) <= 1e-3


@pytest.mark.parametrize("strategy", ["fsdp", "fsdp_offload", "zero3", "zero3_offload"])
def test_parameters_are_sharded_one_over_world(probe, strategy):
    for rank in probe(strategy):
        assert rank["param_fraction"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("strategy", ["zero1", "zero2", "zero2_offload"])
def test_zero12_partition_optimizer_state_and_keep_full_parameters(probe, strategy):
    for rank in probe(strategy):
        assert rank["optimizer_fraction"] == pytest.approx(0.5, abs=0.01)
        assert rank["param_fraction"] == 1.0


def test_ddp_keeps_a_full_replica(probe):
    assert [r["param_fraction"] for r in probe("ddp")] == [1.0, 1.0]


def test_each_pipeline_stage_holds_only_its_layers(probe):
    first, last = probe("pipeline")
    assert (first["layers"], first["first"], first["last"]) == ([0, 2], True, False)
    assert (last["layers"], last["first"], last["last"]) == ([2, 4], False, True)
    assert first["param_fraction"] + last["param_fraction"] == pytest.approx(1.0)
    assert 0.4 < first["param_fraction"] < 0.6
    # eval and generation run through both stages and agree on every rank
    assert first["eval_loss"] == last["eval_loss"] and first["generated"] == last["generated"]


@pytest.mark.parametrize("strategy", LORA_STRATEGIES)
def test_lora_trains_the_same_adapters_in_every_strategy(probe, strategy):
    reference = probe("ddp", method="lora", steps=3)[0]["losses"]
    assert probe(strategy, method="lora", steps=3)[0]["losses"] == pytest.approx(reference, abs=1e-3)


@pytest.mark.parametrize("strategy", BF16_STRATEGIES)
def test_bf16_runs_and_stays_close_to_fp32(probe, strategy):
    fp32 = probe("ddp")[0]["losses"][:3]
    bf16 = probe(strategy, precision="bf16", steps=3)[0]["losses"]
    assert bf16 == pytest.approx(fp32, abs=0.1)


def test_bf16_lora_under_zero3_reads_its_partitioned_adapters(probe):
    """zero.Init builds the model in bf16: its LoRA adapters must stay the partitions DeepSpeed made (peft
    would upcast them to fp32 tensors that are no partition)."""
    fp32 = probe("ddp", method="lora", steps=3)[0]["losses"]
    assert probe("zero3", method="lora", precision="bf16", steps=3)[0]["losses"] == pytest.approx(fp32, abs=0.1)


@pytest.mark.parametrize("strategy", FP16_STRATEGIES)
def test_fp16_scales_the_loss_and_stays_close_to_fp32(probe, strategy):
    """fp16 with dynamic loss scaling, as each strategy's users run it: GradScaler (ddp) or FSDP's
    ShardedGradScaler; on CPU torch's autocast and gloo take fp16 (DeepSpeed's CPU accelerator does not)."""
    fp32 = probe("ddp")[0]["losses"][:3]
    for rank in probe(strategy, precision="fp16", steps=3):
        assert rank["losses"] == pytest.approx(fp32, abs=0.1)
        assert rank["loss_scale"] is not None and rank["loss_scale"] >= 1  # the scaler ran


@pytest.mark.parametrize(("strategy", "world"), COMPILED)
def test_compile_trains_the_same_model(probe, strategy, world):
    """options.<strategy>.compile: the compiled step gives the eager step's losses; eval and generation (run
    eagerly on the compiled model) give the eager run's results."""
    eager = probe(strategy, world=world)[0]
    compiled = probe(strategy, world=world, options={strategy: {"compile": True}})[0]
    assert eager["graphs_compiled"] == 0 and compiled["graphs_compiled"] > 0
    assert compiled["losses"] == pytest.approx(eager["losses"], abs=1e-3)
    assert compiled["eval_loss"] == pytest.approx(eager["eval_loss"], abs=1e-3)
    assert compiled["generated"] == eager["generated"]


@pytest.mark.parametrize("strategy", CHECKPOINTED_STRATEGIES)
def test_activation_checkpointing_recomputes_each_layer_and_keeps_the_losses(probe, strategy):
    """`activation_checkpointing: full`: every decoder layer's forward runs again in backward (its MLP once
    more per micro-batch; a pipeline stage's shape-inference forward may be recomputed too), and training is
    the same computation (fp32, same tokens)."""
    plain = probe(strategy)
    checkpointed = probe(strategy, options=CHECKPOINTED)
    for before, after in zip(plain, checkpointed, strict=True):
        assert before["mlp_forwards"] >= before["micro_batches"] > 0
        extra = after["mlp_forwards"] - before["mlp_forwards"]
        assert before["micro_batches"] <= extra <= before["mlp_forwards"]
        assert after["losses"] == pytest.approx(before["losses"], abs=1e-3)
    assert checkpointed[0]["losses"] == pytest.approx(probe("ddp")[0]["losses"], abs=1e-3)


def test_activation_checkpointing_combines_with_lora(probe):
    reference = probe("ddp", method="lora", steps=3)[0]["losses"]
    checkpointed = probe("fsdp", method="lora", steps=3, options=CHECKPOINTED)
    plain = probe("fsdp", method="lora", steps=3)[0]
    assert checkpointed[0]["mlp_forwards"] == 2 * plain["mlp_forwards"] == 2 * plain["micro_batches"]
    assert checkpointed[0]["losses"] == pytest.approx(reference, abs=1e-3)


def mesh_probe(probe, name, **kwargs):
    return probe(name.split("-")[0], world=4, options=dict(MESH_STRATEGIES[name]), **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("name", MESH_STRATEGIES)
def test_mesh_strategies_have_ddps_loss_trajectory_at_world_4(probe, name):
    reference = probe("ddp", world=4)[0]["losses"]
    ranks = mesh_probe(probe, name)
    for rank in ranks:
        assert max(abs(a - b) for a, b in zip(rank["losses"], reference, strict=True)) <= 1e-3
        assert rank["loaded_exact"]  # every rank's blocks, gathered, are the checkpoint's tensors
    assert len({r["eval_loss"] for r in ranks}) == 1
    # generation reads each data-parallel rank's own prompts: the ranks of one TP group agree
    by_shard = {}
    for r in ranks:
        by_shard.setdefault(r["data_rank"], set()).add(str(r["generated"]))
    assert all(len(outputs) == 1 for outputs in by_shard.values())


@pytest.mark.slow
def test_a_tp_rank_holds_a_quarter_of_each_split_weight(probe, assets):
    shape = Shape.from_config_json(json.loads((assets / "model" / "config.json").read_text()))
    for rank in mesh_probe(probe, "tp"):
        assert rank["q_fraction"] == rank["o_fraction"] == 0.25
        assert "Shard(dim=0)" in rank["q_placements"] and "Shard(dim=1)" in rank["o_placements"]
        assert 0.25 < rank["param_fraction"] < 1  # the embedding, norms and head stay whole
        assert rank["param_fraction"] == pytest.approx(shape.tp_params(4) / shape.params)  # what the estimate counts
        assert (rank["data_rank"], rank["data_world"]) == (0, 1)  # the group reads one batch


@pytest.mark.slow
def test_fsdp_tp_shards_each_tp_block_over_the_data_parallel_ranks(probe):
    tp = mesh_probe(probe, "tp")[0]["param_fraction"]  # split linears / 4 + the whole rest
    rest = (4 * tp - 1) / 3
    ranks = mesh_probe(probe, "fsdp_tp")  # default: TP 2 inside, FSDP over 2
    for rank in ranks:
        assert rank["q_fraction"] == rank["o_fraction"] == 0.25
        # the split linears 1/(2 x 2), the rest (embedding, norms, head) sharded 1/2 by FSDP alone
        assert rank["param_fraction"] == pytest.approx((1 - rest) / 4 + rest / 2, abs=1e-3)
    assert mesh_probe(probe, "fsdp_tp-1x4")[0]["param_fraction"] == pytest.approx(tp, abs=1e-3)
    # TP groups are consecutive ranks (one node); ranks 0,1 read data shard 0, ranks 2,3 shard 1
    assert [(r["data_rank"], r["data_world"]) for r in ranks] == [(0, 2), (0, 2), (1, 2), (1, 2)]
    mesh = ranks[0]["setup_facts"]["device_mesh"]  # what metrics.json records
    assert mesh["dims"] == {"dp": 2, "tp": 2} and mesh["groups"]["tp"] == [[0, 1], [2, 3]]
    assert mesh["groups"]["dp"] == [[0, 2], [1, 3]] and len(mesh["hosts"]) == 4


@pytest.mark.slow
def test_an_hsdp_rank_holds_one_over_its_shard_group(probe):
    ranks = mesh_probe(probe, "hsdp")  # default: shard groups of 2, replicated twice
    for rank in ranks:
        assert rank["param_fraction"] == pytest.approx(0.5, abs=0.01)
    mesh = ranks[0]["setup_facts"]["device_mesh"]
    assert mesh["dims"] == {"replicate": 2, "shard": 2} and mesh["groups"]["shard"] == [[0, 1], [2, 3]]
    assert [r["data_rank"] for r in ranks] == [0, 1, 2, 3]
