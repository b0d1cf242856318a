"""The reference a loading path is held to: plain `from_pretrained` (the whole fp32 model in one process), the
cell's method, and one process training on the cell's global batches (ddp at world 1, unwrapped).

    python tests/dist/reference.py SPEC_JSON MODEL_DIR CACHE_DIR OUT_JSON     -> {"losses": [...]}
"""

import json
import sys
from pathlib import Path

import torch

from ftbench.train import loop, methods
from ftbench.data import tokcache
from ftbench.cell import Cell
from ftbench.train.strategies.base import DataParallelTrainer, TrainEnv, adamw
from ftbench.train.weights import init_adapters


class OneProcess(DataParallelTrainer):
    def __init__(self, module, env):
        self.module, self.max_grad_norm = module, env.max_grad_norm
        self.optimizer = adamw(module.parameters(), env)
        self.data_rank, self.data_world = 0, 1

    def _forward_backward(self, batch, is_last, n):
        loss = self.module(input_ids=batch, labels=batch).loss / n
        loss.backward()
        return loss.detach()


def main(spec_json: str, model_dir: str, cache_dir: str, out: str) -> None:
    from transformers import AutoModelForCausalLM

    spec = json.loads(spec_json)
    torch.set_num_threads(1)
    torch.manual_seed(spec["seed"])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = methods.apply(model, spec["cell"]["method"], spec["options"])
    init_adapters(model, spec["seed"])  # the adapters every strategy starts from
    cell = Cell(**{**spec["cell"], "gpus": 1})  # the same global batches, as accumulated micro-batches
    opt, device = spec["optimizer"], torch.device("cpu")
    env = TrainEnv(0, 1, 0, device, opt["lr"], opt["weight_decay"], opt["max_grad_norm"])
    steps = spec["steps"]
    blocks = tokcache.open_split(Path(cache_dir), "train")
    trained = loop.train(OneProcess(model, env), cell, blocks, steps["warmup"], steps["measure"], spec["seed"], device)
    Path(out).write_text(json.dumps({"losses": trained["losses"]}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
