"""What each precision is, in one table read by training (autocast, FSDP's policy, loss scaling, DeepSpeed's
mode), calibration (which matmul ceilings to time), the memory estimate (bytes per element of each state),
the datasheet lookup and pruning (which strategies and devices run it). Plain data: planning imports it.

Rows are keyed by (name, policy). Every row today is `mixed`: fp32 master weights, gradients and optimizer
state, with 16-bit (or float8) compute. A `pure` row (16-bit parameters, gradients and optimizer state) is a
row with other byte widths, under the same name.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftbench.errors import ConfigError
from ftbench.registry import STRATEGIES

MIXED = "mixed"


@dataclass(frozen=True)
class Precision:
    name: str
    """The `matrix.precision` value and the cell id's part."""
    compute_dtype: str
    """The torch dtype (attribute name) forward and backward compute in: autocast's, FSDP's param_dtype."""
    strategies: tuple[str, ...]
    """The strategies whose code runs it."""
    policy: str = MIXED
    master_bytes: int = 4
    """Bytes per element of the trained (master) weights, their gradients and each AdamW moment."""
    compute_bytes: int = 4
    """Bytes per element of the compute copies of weights and of the activations autograd keeps."""
    loss_scaling: bool = False
    """fp16: dynamic loss scaling (GradScaler, ShardedGradScaler, DeepSpeed's fp16 mode)."""
    calibrated: str = "always"
    """Its matmul ceiling is timed `always` (the summary's MFU columns), `if_run` (when the matrix runs it) or
    `never` (fp8: its float8 matmuls are torchao's kernels, not a dtype to time; its MFU is the datasheet's)."""
    datasheet: tuple[str, ...] = ()
    """ftbench.peaks keys to read its peak FLOP/s from, first found (fp16 runs at the bf16 rate where a GPU
    lists no fp16 of its own)."""
    devices: tuple[str, ...] = ("cpu", "cuda")
    needs: str = ""
    """What a device must have to run it, for the message that refuses it elsewhere."""
    not_on_cpu: tuple[str, ...] = ()
    """Strategies whose CPU path lacks it (DeepSpeed's CPU accelerator has no fp16)."""

    @property
    def mixed(self) -> bool:
        """Computes in a narrower dtype than its master weights: autocast or a mixed-precision policy."""
        return self.compute_bytes < self.master_bytes

    @property
    def optimizer_bytes(self) -> int:
        """AdamW's state per trained parameter: two moments."""
        return 2 * self.master_bytes


def _every_strategy_but(*names: str) -> tuple[str, ...]:
    return tuple(name for name in STRATEGIES if name not in names)


_ZERO = tuple(name for name, s in STRATEGIES.items() if s.zero_stage)
PRECISIONS: dict[tuple[str, str], Precision] = {
    (p.name, p.policy): p
    for p in (
        Precision("fp32", "float32", _every_strategy_but(), datasheet=("fp32",)),
        Precision("bf16", "bfloat16", _every_strategy_but(), compute_bytes=2, datasheet=("bf16",)),
        Precision(
            "fp16",
            "float16",
            # TP keeps the embedding, norms and head plain beside DTensor layers and torch's grad scalers take
            # no such mix; the pipeline schedule runs its own backward, outside a scaler
            _every_strategy_but("pipeline", "tp", "fsdp_tp"),
            compute_bytes=2,
            loss_scaling=True,
            calibrated="if_run",
            datasheet=("fp16", "bf16"),
            not_on_cpu=_ZERO,
        ),
        Precision(
            "fp8",
            "bfloat16",  # float8 inside the decoder layers' linears (torchao), bf16 autocast around the rest
            # DeepSpeed's engine and FSDP's CPU offload take no float8 linears; TP would need torchao's own plans
            ("ddp", "fsdp", "hsdp"),
            compute_bytes=2,
            calibrated="never",
            datasheet=("fp8",),
            devices=("cuda",),
            needs="a GPU with float8 matmuls (H100-class, compute capability 8.9+)",
        ),
    )
}
NAMES = tuple(dict.fromkeys(name for name, _ in PRECISIONS))


def precision_of(name: str, policy: str = MIXED) -> Precision:
    if (name, policy) not in PRECISIONS:
        raise ConfigError(f"matrix.precision: {name!r} ({policy}) is not one of {', '.join(NAMES)}")
    return PRECISIONS[name, policy]


def precisions_run_by(strategy: str) -> list[str]:
    return [p.name for p in PRECISIONS.values() if strategy in p.strategies]


def refusal(name: str, strategy: str, device: str | None) -> str | None:
    """Why `strategy` cannot run precision `name` on `device` (cpu, cuda; None: not known), or None."""
    p = precision_of(name)
    if strategy not in p.strategies:
        return f"{strategy} does not run {name} (it runs {', '.join(precisions_run_by(strategy))})"
    if device == "cpu" and strategy in p.not_on_cpu:
        return f"{strategy}: DeepSpeed's CPU accelerator has no {name} (run it on GPUs, or bf16 here)"
    return None


def calibrated(run: list[str]) -> list[str]:
    """The precisions whose matmul ceiling calibration times, for a matrix that runs `run`."""
    return [
        p.name for p in PRECISIONS.values() if p.calibrated == "always" or (p.calibrated == "if_run" and p.name in run)
    ]
