"""DeepSpeed ZeRO stages 1-3 through one engine, with the same torch AdamW as the other strategies; with the
optimizer state offloaded to the host, DeepSpeed's own CPU Adam (a C++ op DeepSpeed builds with the machine's
compiler once into TORCH_EXTENSIONS_DIR, resources/torch_extensions in a workflow run), as its users run it.
Launched by torchrun like everything else: the process group exists already, DeepSpeed only joins it.
bf16 = DeepSpeed's bf16 mode (bf16 weights, fp32 master copy); fp16 = its fp16 mode with dynamic loss scaling
(GPU only: DeepSpeed's CPU accelerator has no fp16, so planning prunes those cells).

Stages 1 and 2 hold a full replica: allocated on the device and read into from the files. Stage 3 builds
the model under `deepspeed.zero.Init`, which partitions each module's parameters as it is created, and each
rank then reads only its own partition; how much of the model stays gathered at once is set for the cell
from one decoder layer's size (`stage3_settings`), not DeepSpeed's defaults (1e9 live parameters, which
keep a model of a few hundred million parameters gathered whole). Stages 1 and 2 size their buckets the
same way (`bucket_settings`)."""

from __future__ import annotations

import deepspeed
import torch

from ftbench.precision import precision_of
from ftbench.train.layers import decoder_layers
from ftbench.train.strategies.base import TrainEnv, adamw, greedy_generate


def start_runtime(stage: int, offload: bool = False) -> None:
    """DeepSpeed's part of the runtime, before the cell's memory budget starts (ftbench.train.limits): it joins
    torchrun's process group and loads its comm op, and with offload its CPU Adam op, each built with g++ the
    first time. A compiler under a rank's memory limit fails to build it."""
    deepspeed.init_distributed(dist_backend=None)
    if offload:
        from deepspeed.ops.op_builder import CPUAdamBuilder

        CPUAdamBuilder().load()


def layer_sizes(model: torch.nn.Module) -> tuple[int, int]:
    """Elements of one decoder layer, and of a bucket of its gradients: the parameters that train (all, or
    LoRA's adapters), at least one hidden row."""
    first = decoder_layers(model)[0]
    trained = sum(p.numel() for p in first.parameters() if p.requires_grad)
    return sum(p.numel() for p in first.parameters()), max(trained, model.config.hidden_size)


def bucket_settings(model: torch.nn.Module) -> dict:
    """Stages 1 and 2: gradients reduced and updated parameters all-gathered in buckets of one layer's trained
    elements. DeepSpeed's default, 5e8 elements, allocates 2 GB of fp32 bucket per rank whatever the model."""
    _, bucket = layer_sizes(model)
    return {"reduce_bucket_size": bucket, "allgather_bucket_size": bucket}


def stage3_settings(model: torch.nn.Module) -> dict:
    """What stays gathered under ZeRO-3: at most two decoder layers live (the one running and the one
    prefetched), a prefetch bucket of one layer and a gradient reduce bucket of one layer's trained elements
    (DeepSpeed's default bucket, 5e8 elements, fills with a whole small model's gradients before it reduces;
    under LoRA a layer-sized bucket would hold mostly nothing), and parameters under 10 x hidden size (norms,
    biases) kept whole on every rank, as transformers' "auto" values do."""
    layer, bucket = layer_sizes(model)
    return {
        "stage3_max_live_parameters": 2 * layer,
        "stage3_max_reuse_distance": layer,
        "stage3_prefetch_bucket_size": layer,
        "stage3_param_persistence_threshold": 10 * model.config.hidden_size,
        "reduce_bucket_size": bucket,
    }


def ds_config(cell, env: TrainEnv, stage: int, offload: bool, model: torch.nn.Module | None = None) -> dict:
    zero = {"stage": stage}
    compute = precision_of(cell.precision).compute_dtype
    if model is not None:
        zero.update(stage3_settings(model) if stage == 3 else bucket_settings(model))
    if offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": env.device.type == "cuda"}
    return {
        "train_batch_size": cell.global_batch_size,
        "train_micro_batch_size_per_gpu": cell.batch_size_per_gpu,
        "gradient_accumulation_steps": cell.grad_accum_steps,
        "gradient_clipping": env.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": compute == "bfloat16"},
        # fp16: DeepSpeed's own dynamic loss scaling (scale 2^16 to start, halved on overflow, step skipped)
        "fp16": {"enabled": compute == "float16", "loss_scale": 0, "initial_scale_power": 16},
        "steps_per_print": 2**31 - 1,
    }


def cpu_adam(params, env: TrainEnv):
    """DeepSpeed's CPU Adam in AdamW mode, with `adamw`'s betas and weight decay."""
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    return DeepSpeedCPUAdam(
        [p for p in params if p.requires_grad],
        lr=env.lr,
        betas=(0.9, 0.95),
        weight_decay=env.weight_decay,
        adamw_mode=True,
    )


class ZeroTrainer:
    def __init__(self, module: torch.nn.Module, cell, env: TrainEnv, stage: int, offload: bool):
        self.config = ds_config(cell, env, stage, offload, module)
        if stage == 3:
            # the meta model only described the shapes: rebuild it partitioned, then read each partition
            deepspeed.init_distributed(dist_backend=None)  # joins torchrun's group: zero.Init needs its size
            # dtype from the config (fp32, or bf16 in bf16 mode): an explicit dtype=torch.float32 is turned into
            # bf16 on accelerators without fp16, the CPU's among them (deepspeed 0.19 `_set_dtype`)
            with deepspeed.zero.Init(config_dict_or_path=self.config):
                module = env.weights.empty(meta=False)
            env.weights.fill(module)
        else:
            env.weights.materialize(module, env.device)
        optimizer = cpu_adam(module.parameters(), env) if offload else adamw(module.parameters(), env)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=module, optimizer=optimizer, config=self.config, dist_init_required=False
        )
        self.module = self.engine.module
        self.data_rank, self.data_world = env.rank, env.world_size
        self.setup_facts = {"deepspeed_zero_optimization": self.config["zero_optimization"]}

    def train_step(self, micro_batches):
        # the engine scales each loss by 1/accumulation and steps the optimizer on the last micro-batch
        total = torch.zeros((), device=micro_batches[0].device)
        for batch in micro_batches:
            loss = self.engine(input_ids=batch, labels=batch).loss
            self.engine.backward(loss)
            self.engine.step()
            total += loss.detach().float() / len(micro_batches)
        return total

    @torch.no_grad()
    def eval_loss(self, batch):
        return self.engine(input_ids=batch, labels=batch).loss.detach().float()

    @torch.no_grad()
    def generate(self, prompts, new_tokens):
        return greedy_generate(self.module, prompts, new_tokens)


def apply(model: torch.nn.Module, cell, env: TrainEnv, stage: int, offload: bool = False) -> ZeroTrainer:
    return ZeroTrainer(model, cell, env, stage, offload)
