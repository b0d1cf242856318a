"""FSDP2: `fully_shard` each decoder layer, then the root; parameters, gradients and optimizer state are
sharded 1/world per rank and gathered layer by layer. bf16 = MixedPrecisionPolicy (bf16 compute, fp32
gradient reduction, fp32 sharded master weights). `options.fsdp.compile`: each decoder layer torch.compile'd.
`fsdp_offload`: FSDP2's CPUOffloadPolicy, the sharded parameters, gradients and optimizer step on the host
(each layer is copied to the device to be gathered); on a CPU device there is nothing to move.
`hsdp`: the same on a 2D mesh (replicate x shard): each parameter is sharded over a shard group of
`cell.mesh.shard` consecutive ranks and replicated across groups; gradients are reduce-scattered inside a
group, then all-reduced across groups.
"""

from __future__ import annotations

import torch
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

from ftbench.train.layers import decoder_layers
from ftbench.train.strategies.base import (
    DataParallelTrainer,
    TrainEnv,
    adamw,
    compile_requested,
    grad_scaler,
    mesh_facts,
    mixed_precision_policy,
)


class FSDPTrainer(DataParallelTrainer):
    def __init__(self, module: torch.nn.Module, cell, env: TrainEnv, offload: bool = False):
        shape = cell.mesh
        if shape.shard < env.world_size:  # HSDP
            mesh = init_device_mesh(
                env.device.type, (shape.replicate, shape.shard), mesh_dim_names=("replicate", "shard")
            )
            self.setup_facts = {"device_mesh": mesh_facts(mesh)}
        else:
            mesh = init_device_mesh(env.device.type, (env.world_size,))
        shard_options = {"offload_policy": CPUOffloadPolicy(pin_memory=env.device.type == "cuda")} if offload else {}
        policy = mixed_precision_policy(cell.precision)
        compile_layers = compile_requested(cell, env)
        for layer in decoder_layers(module):
            if compile_layers:  # each layer before it is sharded, as torchtitan does
                layer.compile()
            fully_shard(layer, mesh=mesh, mp_policy=policy, **shard_options)
        fully_shard(module, mesh=mesh, mp_policy=policy, **shard_options)
        # sharded on the meta device: each rank allocates and reads only its own rows of every parameter (on the
        # host when offloaded: FSDP2 keeps offloaded shards there)
        env.weights.materialize(module, torch.device("cpu") if shard_options else env.device, buffer_device=env.device)
        self.module = module
        self.scaler = grad_scaler(cell.precision, env.device, sharded=True)
        self.optimizer = adamw(module.parameters(), env, scaled=self.scaler is not None)
        self.max_grad_norm = env.max_grad_norm
        self.data_rank, self.data_world = env.rank, env.world_size

    def _forward_backward(self, batch, is_last: bool, n: int) -> torch.Tensor:
        # reduce-scatter gradients only after the last micro-batch of the step
        self.module.set_requires_gradient_sync(is_last)
        loss = self.module(input_ids=batch, labels=batch).loss / n
        self.backward(loss)
        return loss.detach()


def apply(model: torch.nn.Module, cell, env: TrainEnv, offload: bool = False) -> FSDPTrainer:
    return FSDPTrainer(model, cell, env, offload)
