"""torchrun entry point: train one cell and write its metrics.json.

    torchrun --standalone --nproc-per-node N -m ftbench.train.job \
        --spec '<job spec json>' --model DIR --cache DIR --out metrics.json
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from ftbench import record
from ftbench.cell import Cell, parse_job_spec
from ftbench.data import tokcache
from ftbench.files import atomic_write_json, read_json, verify_manifest
from ftbench.plan.matrix import check_downloaded_model
from ftbench.train import float8, limits, loop, metrics, provenance
from ftbench.train.strategies import TrainEnv, build_trainer, start_runtime
from ftbench.train.weights import Weights

log = logging.getLogger("ftbench.train.job")

EXIT_OOM = 3


def pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def check_cache_matches_model(cache_dir: Path, model_dir: Path, model) -> dict:
    """The cache must come from this model's tokenizer and fit its embedding table."""
    manifest = read_json(cache_dir / "manifest.json")
    fingerprint = tokcache.tokenizer_fingerprint(model_dir)
    if manifest["tokenizer_fingerprint"] != fingerprint:
        raise ValueError(
            f"token cache {cache_dir} was built with tokenizer {manifest['tokenizer_fingerprint'][:12]}, "
            f"but {model_dir}/tokenizer.json is {fingerprint[:12]}"
        )
    if manifest["vocab_size"] > model.get_input_embeddings().num_embeddings:
        raise ValueError(f"token cache {cache_dir} vocabulary exceeds the model's embedding table")
    return manifest


def check_inputs(cell: Cell, model_dir: Path, cache_dir: Path) -> dict:
    """Before any process group starts: the model's and the token cache's files are those their manifests
    record (sizes always, sha256 within `files.HASH_BUDGET_BYTES` per directory), and the train split holds
    at least one global batch. A truncated or corrupted file is refused naming it, never trained on."""
    model_manifest = verify_manifest(model_dir, what="model", rebuild=model_rule(model_dir))
    cache_manifest = tokcache.verify(cache_dir)
    loop.check_enough_data(cache_manifest["splits"]["train"]["blocks"], cell)
    return {"model": model_manifest, "cache": cache_manifest}


def model_rule(model_dir: Path) -> str:
    """The rule that makes a model directory: prepare_model for `config:` sources, else download_model."""
    try:
        source = read_json(Path(model_dir) / "manifest.json").get("source", "")
    except (OSError, ValueError):
        source = ""
    return "prepare_model" if source.startswith("config:") else "download_model"


@dataclass
class Setup:
    """A rank ready to train: its device and place in the world, the wrapped model and what was counted
    before the strategy sharded or split it."""

    rank: int
    device: torch.device
    trainer: object
    memory: metrics.MemoryPhases
    provenance: dict | None
    cache_manifest: dict
    params_total: int
    params_trainable: int
    flops: dict


def run(
    spec: dict, cell: Cell, model_dir: Path, cache_dir: Path, out: Path, progress: loop.Progress | None = None
) -> dict | None:
    """Train the cell of `spec` (`parse_job_spec`'s) and, on rank 0, write its metrics.json; `progress` is kept
    current for a failure report."""
    progress = loop.Progress() if progress is None else progress
    setup = set_up(spec, cell, model_dir, cache_dir, progress)
    measured = measure(setup, spec, cell, cache_dir, progress)
    # Free the wrapped model (it holds the process group) while every peer is still connected: a group
    # destroyed later, after a peer exited, can hang in gloo's teardown.
    del setup.trainer
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
    if setup.rank != 0:
        return None
    result = record_result(spec, cell, setup, measured, model_dir, progress)
    atomic_write_json(out, result)
    log.info(
        "%s: %.0f train tok/s, eval loss %.3f, %.2f GB peak",
        cell.id,
        result["train_tokens_per_s"],
        result["eval_loss"],
        result["peak_memory_gb"],
    )
    return result


def set_up(spec: dict, cell: Cell, model_dir: Path, cache_dir: Path, progress: loop.Progress) -> Setup:
    """Device, input checks, process group, the model (its weights read into whatever the rank holds) and
    the strategy's trainer around it."""
    marks = progress.marks
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    marks["transformers"] = time.time()

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(spec["hardware"]["device"], local_rank)
    # DeepSpeed guesses its accelerator at import; tell it instead (gloo on CPU, NCCL on CUDA)
    os.environ["DS_ACCELERATOR"] = device.type
    if device.type == "cpu":
        torch.set_num_threads(spec["hardware"]["cpu_threads_per_rank"])
    if world != cell.gpus:
        raise ValueError(f"cell {cell.id} needs {cell.gpus} processes, torchrun started {world}")
    if local_rank == 0:  # once per node: every rank of it reads the same files
        check_inputs(cell, model_dir, cache_dir)
    check_downloaded_model(cell, model_dir / "config.json")
    float8.check(cell, device)
    progress.phase = "setup"
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    start_runtime(cell.strategy)  # its libraries and their ops are runtime, as the process group is
    marks["process_group"] = time.time()
    prov = provenance.collect(device, spec["seed"]) if rank == 0 else None  # only rank 0 writes metrics

    torch.manual_seed(spec["seed"])
    # the model without its weights: the strategy shards, cuts or partitions it, then each rank reads what it holds
    # setup ends when the weights are in place; optimizer state (DeepSpeed's master copy and gradient buffers
    # at its initialize, torch AdamW's at the first step) counts towards the training peak in every strategy
    memory = metrics.MemoryPhases(device)
    weights = Weights(
        model_dir,
        cell.method,
        spec["options"],
        spec["seed"],
        on_loaded=memory.end_setup,
        activation_checkpointing=cell.activation_checkpointing,
    )
    model = weights.empty()
    if cell.precision == "fp8":
        float8.convert(model)
    if os.environ.get("FTBENCH_CPU_MEMORY_GB") and device.type == "cpu":
        # the budget is for the model's weights and training: the runtime and the weightless model are up
        limits.limit_cpu_memory(float(os.environ["FTBENCH_CPU_MEMORY_GB"]))
    cache_manifest = check_cache_matches_model(cache_dir, model_dir, model)
    marks["model_load"] = time.time()
    # counted before the strategy shards or splits the model
    params_total = sum(p.numel() for p in model.parameters())
    params_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops = metrics.flops_per_token(model, cell.seq_len, recompute=cell.activation_checkpointing != "none")
    opt = spec["optimizer"]
    env = TrainEnv(
        rank,
        world,
        local_rank,
        device,
        opt["lr"],
        opt["weight_decay"],
        opt["max_grad_norm"],
        spec["options"],
        weights,
    )
    trainer = build_trainer(model, cell, env)
    marks["strategy_setup"] = time.time()
    return Setup(rank, device, trainer, memory, prov, cache_manifest, params_total, params_trainable, flops)


def measure(setup: Setup, spec: dict, cell: Cell, cache_dir: Path, progress: loop.Progress) -> dict:
    """The timed steps, then eval and generation; their results and every rank's memory peaks."""
    device, trainer = setup.device, setup.trainer
    metrics.sync(device)
    run_start = time.perf_counter()  # run duration: end of model load -> end of eval and generation
    steps, gen = spec["steps"], spec["generation"]
    progress.phase = "train"
    trained = loop.train(
        trainer,
        cell,
        tokcache.open_split(cache_dir, "train"),
        steps["warmup"],
        steps["measure"],
        spec["seed"],
        device,
        progress,
        spec["optimizer"],
    )
    setup.memory.end_train()
    progress.phase = "eval"
    eval_blocks = tokcache.open_split(cache_dir, "eval")
    evaluated = loop.evaluate(trainer, eval_blocks, cell.batch_size_per_gpu, steps["eval"], device)
    progress.phase = "generate"
    generated = loop.generation(
        trainer,
        eval_blocks,
        cell.batch_size_per_gpu,
        min(gen["prompt_tokens"], cell.seq_len),
        gen["new_tokens"],
        device,
    )
    metrics.sync(device)
    return {
        "trained": trained,
        "evaluated": evaluated,
        "generated": generated,
        "run_duration_s": time.perf_counter() - run_start,
        "memory": metrics.memory_summary(metrics.gather(setup.memory.summary())),
        "setup_facts": getattr(trainer, "setup_facts", {}),
    }


def record_result(
    spec: dict, cell: Cell, setup: Setup, measured: dict, model_dir: Path, progress: loop.Progress
) -> dict:
    """The cell's metrics.json (rank 0): what it is, what it measured, what it ran on."""
    from transformers import AutoTokenizer

    steps, gen = spec["steps"], spec["generation"]
    trained, generated, eval_loss, flops = (
        measured["trained"],
        measured["generated"],
        measured["evaluated"]["eval_loss"],
        setup.flops,
    )
    losses = trained["losses"][steps["warmup"] :]
    throughput = metrics.throughput(cell.tokens_per_step, cell.global_batch_size, trained["step_times_s"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    result = {
        "status": record.STATUS_OK,
        **record.header(cell, spec),
        "grad_accum_steps": cell.grad_accum_steps,
        "tokens_per_step": cell.tokens_per_step,
        "warmup_steps": steps["warmup"],
        "measure_steps": steps["measure"],
        **throughput,
        **flops,
        "achieved_flops_per_s_per_gpu": flops["flops_per_token"] * throughput["train_tokens_per_s"] / cell.gpus,
        "achieved_hardware_flops_per_s_per_gpu": (
            flops["hardware_flops_per_token"] * throughput["train_tokens_per_s"] / cell.gpus
        ),
        "run_duration_s": measured["run_duration_s"],
        # one pass over the cell's own training data at the measured throughput
        "epoch_s": setup.cache_manifest["tokens"]["train"] / throughput["train_tokens_per_s"],
        "train_loss_avg": sum(losses) / len(losses),
        "train_loss_final": losses[-1],
        "eval_loss": eval_loss,
        "eval_perplexity": metrics.perplexity(eval_loss),
        "eval_tokens_per_s": measured["evaluated"]["eval_tokens_per_s"],
        "inference_tokens_per_s": generated["inference_tokens_per_s"],
        "prefill_s": generated["prefill_s"],
        "decode_latency_per_token_s": generated["decode_latency_per_token_s"],
        "inference_new_tokens": gen["new_tokens"],
        "sample_generation": tokenizer.decode(generated["generated_ids"][generated["prompt_len"] :]),
        **measured["memory"],
        **metrics.energy(trained["energy_j"], cell.tokens_per_step * len(trained["step_times_s"])),
        **measured["setup_facts"],
        "params_total": setup.params_total,
        "params_trainable": setup.params_trainable,
        **metrics.startup(progress.marks, os.environ.get("FTBENCH_LAUNCH_T0")),
        "step_times_s": trained["step_times_s"],
        "losses": trained["losses"],
        "token_cache": {k: setup.cache_manifest[k] for k in ("tokenizer_fingerprint", "tokens", "dtype")},
        "config": spec,
        "provenance": setup.provenance,
    }
    if note := metrics.divergence_note(trained["losses"]):
        result["note"] = note
        log.warning("%s: %s", cell.id, note)
    return result


def report_failure(cell_dir: Path, rank: int, error: BaseException, progress: loop.Progress) -> None:
    """What this rank saw: `oom-rank<r>.json` for running out of memory, else `error-rank<r>.json`."""
    name = record.RANK_OOM_FILE if limits.is_oom(error) else record.RANK_ERROR_FILE
    log.error("rank %d failed in %s: %s: %s", rank, progress.phase, type(error).__name__, error)
    atomic_write_json(
        cell_dir / name.format(rank=rank),
        {
            "rank": rank,
            "phase": progress.phase,
            "steps_done": progress.steps_done,
            "step_times_s": list(progress.step_times_s),
            "error_type": type(error).__name__,
            "error": str(error)[:2000],
            "traceback": traceback.format_exception(error)[-12:],
            "cpu_peak_rss_gb": metrics.peak_memory(torch.device("cpu"))["cpu_peak_rss_gb"],
        },
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="job spec as JSON (ftbench.plan.matrix.job_spec)")
    parser.add_argument("--model", required=True, type=Path, help="model directory (Hugging Face format)")
    parser.add_argument("--cache", required=True, type=Path, help="token cache directory")
    parser.add_argument("--out", required=True, type=Path, help="metrics.json to write")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", 0))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank{rank}] %(name)s: %(message)s",
    )
    progress = loop.Progress(marks={"main": time.time()})
    try:
        run(*parse_job_spec(args.spec), args.model, args.cache, args.out, progress)
    except BaseException as error:
        report_failure(args.out.parent, rank, error, progress)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        # leave at once: peers blocked in a collective are stopped by torchrun, not waited for
        os._exit(EXIT_OOM if limits.is_oom(error) else 1)
    # Everything is written and the process group is gone: leave without interpreter teardown. Native
    # threads can abort there ("terminate called without an active exception", seen once with DeepSpeed
    # on gloo), which would turn a finished cell into a failed one.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
