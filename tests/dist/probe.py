"""torchrun program for tests: train a few steps with one strategy through the real ftbench code and print,
into <out_dir>/rank<r>.json, the losses and facts that show the mechanism (what each rank holds)."""

import gc
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ftbench.train import loop
from ftbench.data import tokcache
from ftbench.cell import Cell
from ftbench.train.strategies import TrainEnv, build_trainer
from ftbench.train.weights import Weights


def loaded_as_saved(module, model_dir) -> bool:
    """Every parameter, gathered whole from its ranks' blocks, equals the checkpoint's tensor (DTensors only:
    a plain tensor is read whole)."""
    from safetensors.torch import load_file
    from torch.distributed.tensor import DTensor

    saved = {}
    for path in Path(model_dir).glob("*.safetensors"):
        saved.update(load_file(path))
    ok = True
    for name, p in module.named_parameters():
        key = name.removeprefix("base_model.model.").replace(".base_layer.", ".")  # peft's wrapping
        if isinstance(p, DTensor) and ".lora_" not in name:  # adapters are in no checkpoint
            ok &= bool(torch.equal(p.full_tensor(), saved[key]))
    return ok


def held(trainer, strategy: str, full_params: int) -> dict:
    """How much of the model / optimizer state this rank holds."""
    if strategy in ("tp", "fsdp_tp"):
        if strategy == "fsdp_tp":
            trainer.module.reshard()
        q = trainer.module.model.layers[0].self_attn.q_proj.weight
        o = trainer.module.model.layers[0].self_attn.o_proj.weight
        local = sum(getattr(p, "to_local", lambda p=p: p)().numel() for p in trainer.module.parameters())
        return {"param_fraction": local / full_params, "q_fraction": q.to_local().numel() / q.numel(),
                "o_fraction": o.to_local().numel() / o.numel(), "q_placements": str(q.placements),
                "o_placements": str(o.placements)}
    if strategy.startswith("fsdp") or strategy == "hsdp":
        trainer.module.reshard()  # the root stays unsharded after a forward (generation) until its backward
        local = sum(p.to_local().numel() for p in trainer.module.parameters())
        return {"param_fraction": local / full_params}
    if strategy.startswith("zero3"):
        local = sum(p.ds_tensor.numel() for p in trainer.module.parameters())
        return {"param_fraction": local / full_params}
    if strategy.startswith("zero"):
        groups = trainer.engine.optimizer.single_partition_of_fp32_groups
        return {
            "optimizer_fraction": sum(g.numel() for g in groups) / full_params,
            "param_fraction": sum(p.numel() for p in trainer.module.parameters()) / full_params,
        }
    if strategy == "pipeline":
        stage = trainer.stage
        return {"param_fraction": sum(p.numel() for p in stage.parameters()) / full_params,
                "layers": [stage.lo, stage.hi], "first": stage.first, "last": stage.last}
    return {"param_fraction": sum(p.numel() for p in trainer.module.parameters()) / full_params}


def probe_run(model_dir, cache_dir, strategy, method, precision, steps, gbs, bs, out_dir, options):
    """One run in the launch's process group: build, load, train, evaluate, generate; write this rank's facts."""
    rank, world = dist.get_rank(), dist.get_world_size()
    options = dict(options)
    mesh = {k: options.pop(k) for k in ("tp_degree", "shard_group") if k in options}  # cell fields
    checkpointing = options.pop("activation_checkpointing", "none")  # a cell field, not a strategy option
    optimizer = {"lr": 1e-2, **options.pop("optimizer", {})}  # the optimizer config (a schedule), not an option
    cell = Cell("probe", strategy, world, method, precision, bs, 32, gbs, checkpointing, **mesh)
    torch._dynamo.reset()  # no graph of an earlier run is reused or counted
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    # LoRA adapters: seeded by name, the same in every strategy
    weights = Weights(model_dir, method, {}, 0, activation_checkpointing=checkpointing)
    model = weights.empty()
    full = sum(p.numel() for p in model.parameters())
    env = TrainEnv(rank, world, rank, torch.device("cpu"), 1e-2, 0.0, 1.0, options, weights)
    trainer = build_trainer(model, cell, env)
    loaded_exact = loaded_as_saved(trainer.module, model_dir)
    # forwards of this rank's first MLP during training: one more per micro-batch when activations are recomputed
    mlp = next(m for m in trainer.module.modules() if type(m).__name__.endswith("MLP"))
    mlp_forwards = []
    # a pre-hook: the recomputation stops early, once the last tensor backward needs is rebuilt
    hook = mlp.register_forward_pre_hook(lambda *_: mlp_forwards.append(1))
    train_blocks = tokcache.open_split(cache_dir, "train")
    out = loop.train(trainer, cell, train_blocks, 0, steps, 0, torch.device("cpu"), optimizer=optimizer)
    hook.remove()
    eval_loss = loop.evaluate(trainer, tokcache.open_split(cache_dir, "eval"), bs, 2, torch.device("cpu"))["eval_loss"]
    gen = loop.generation(trainer, tokcache.open_split(cache_dir, "eval"), bs, 4, 3, torch.device("cpu"))
    facts = {"rank": rank, "losses": out["losses"], "eval_loss": eval_loss, "generated": gen["generated_ids"],
             "graphs_compiled": torch._dynamo.utils.counters["stats"]["unique_graphs"],
             "mlp_forwards": len(mlp_forwards), "micro_batches": steps * cell.grad_accum_steps,
             "loaded_exact": loaded_exact, "setup_facts": getattr(trainer, "setup_facts", {}),
             "loss_scale": getattr(trainer, "scaler", None) and trainer.scaler.get_scale(), "data_rank": trainer.data_rank, "data_world": trainer.data_world,
             **held(trainer, strategy, full)}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(facts))
    dist.barrier()  # every rank is done with this model before the next run builds one


def main(model_dir, cache_dir, runs):
    """Every run of one launch shares its process group and imports: what a launch costs is mostly starting
    torch, transformers and DeepSpeed in each rank, not the few steps of a tiny model."""
    os.environ["DS_ACCELERATOR"] = "cpu"
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    for i, run in enumerate(runs):
        print(f"probe run {i}: {json.dumps(run)}", flush=True)
        probe_run(model_dir, cache_dir, **run)
        gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    # model dir, token cache dir, then a JSON list of runs: {strategy, method, precision, steps, gbs, bs,
    # out_dir, options}
    main(Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]))
