"""Tensor parallelism with DTensor (`tp`), and FSDP2 over it (`fsdp_tp`, 2D).

`tp`: every rank of the cell is one TP group. Each decoder layer is split as the model's own transformers
`base_model_tp_plan` says (Llama: q/k/v, gate and up column-wise, o and down row-wise, Megatron's layout):
a rank holds 1/tp of each of those weights and computes 1/tp of the heads and of the MLP, with one
all-reduce after attention and one after the MLP, forward and backward. The embedding, the norms and the
head stay whole on every rank, so the residual stream and the loss are plain tensors. Every rank of a group
reads the same micro-batches.

`fsdp_tp`: a (dp, tp) mesh, TP innermost, so a TP group is consecutive ranks, which torchrun places on one
node; each layer is TP-split inside its group, then `fully_shard` over the data-parallel dimension shards
what each rank holds 1/dp further (torchtitan's 2D). bf16: autocast for `tp`, FSDP's MixedPrecisionPolicy for
`fsdp_tp`, fp32 master weights either way.
"""

from __future__ import annotations

import torch
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from ftbench.train.layers import decoder_layers
from ftbench.train.strategies.base import (
    DataParallelTrainer,
    TrainEnv,
    adamw,
    clip_grad_norm,
    mesh_facts,
    mixed_precision_policy,
)

STYLES = {"colwise": ColwiseParallel, "rowwise": RowwiseParallel}
"""The plan entries ftbench applies; a model whose plan asks for others (gathered outputs, packed weights)
is refused rather than split differently from what its authors meant."""


def layer_plan(model: torch.nn.Module, cell) -> dict:
    """The model's TP plan for one decoder layer: {path inside the layer: style}."""
    plan = getattr(model.config, "base_model_tp_plan", None) or {}
    layer_entries = {k.split(".*.", 1)[1]: v for k, v in plan.items() if k.startswith("layers.*.")}
    unknown = sorted({v for v in layer_entries.values() if v not in STYLES})
    if not layer_entries or unknown:
        raise ValueError(
            f"cell {cell.id}: {type(model).__name__} has no column/row-wise tensor-parallel plan "
            f"({'styles ' + ', '.join(unknown) if unknown else 'none'} in config.base_model_tp_plan); "
            f"{cell.strategy} needs one (Llama, Mistral, Qwen2)"
        )
    return {path: STYLES[style]() for path, style in layer_entries.items()}


class TensorParallelTrainer(DataParallelTrainer):
    def __init__(self, module: torch.nn.Module, cell, env: TrainEnv, fsdp: bool = False):
        from torch.distributed.fsdp import fully_shard

        shape = cell.mesh
        mesh = init_device_mesh(
            env.device.type, (shape.data_parallel, shape.tensor_parallel), mesh_dim_names=("dp", "tp")
        )
        plan = layer_plan(module, cell)
        for layer in decoder_layers(module):
            parallelize_module(layer, mesh["tp"], plan)
        if fsdp:
            policy = mixed_precision_policy(cell.precision)
            for layer in decoder_layers(module):
                fully_shard(layer, mesh=mesh["dp"], mp_policy=policy)
            fully_shard(module, mesh=mesh["dp"], mp_policy=policy)
        else:
            self.autocast_precision, self.device = cell.precision, env.device
        # split (and sharded) on the meta device: each rank allocates and reads only its own block of each weight
        env.weights.materialize(module, env.device)
        self.module, self.fsdp = module, fsdp
        self.optimizer = adamw(module.parameters(), env)
        self.max_grad_norm = env.max_grad_norm
        self.setup_facts = {"device_mesh": mesh_facts(mesh)}
        coordinate = mesh.get_coordinate()
        self.data_rank, self.data_world = coordinate[0], shape.data_parallel

    def clip(self) -> None:
        clip_grad_norm(self.module.parameters(), self.max_grad_norm)

    def _forward_backward(self, batch, is_last: bool, n: int) -> torch.Tensor:
        if self.fsdp:  # reduce-scatter over the data-parallel dimension after the last micro-batch only
            self.module.set_requires_gradient_sync(is_last)
        with self.autocast():
            loss = self.module(input_ids=batch, labels=batch).loss / n
        self.backward(loss)
        return loss.detach()


def apply(model: torch.nn.Module, cell, env: TrainEnv, fsdp: bool = False) -> TensorParallelTrainer:
    return TensorParallelTrainer(model, cell, env, fsdp)
