"""fp8 training through torchao's float8 linears (`precision: fp8`): every decoder-layer linear computes its
matmuls in float8 with dynamic per-tensor scales (torchao's `tensorwise` recipe), the rest under bf16
autocast, fp32 master weights. Only GPUs with float8 tensor cores run it (compute capability 8.9+: H100,
H200, L4, L40S); `check` refuses anything else before the process group starts, naming the cell."""

from __future__ import annotations

import torch

from ftbench.errors import ConfigError

MIN_CAPABILITY = (8, 9)


def check(cell, device: torch.device) -> None:
    """Refuse an fp8 cell on a device without float8 matmuls, or without torchao, naming the cell."""
    if cell.precision != "fp8":
        return
    if device.type != "cuda":
        raise ConfigError(
            f"cell {cell.id}: fp8 needs a GPU with float8 matmuls (compute capability 8.9+), this rank runs on "
            f"{device.type}; leave fp8 out of matrix.precision for it"
        )
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        raise ConfigError(
            f"cell {cell.id}: fp8 needs compute capability {'.'.join(map(str, MIN_CAPABILITY))}+ (H100-class), "
            f"{name} has {'.'.join(map(str, capability))}; leave fp8 out of matrix.precision on it"
        )
    try:
        import torchao.float8  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"cell {cell.id}: fp8 runs through torchao, which is not installed ({e}): "
            "pip install 'ftbench[fp8]' (torchao)"
        ) from None


def _eligible(module: torch.nn.Module, fqn: str) -> bool:
    """A linear whose sizes float8 kernels take (multiples of 16)."""
    return isinstance(module, torch.nn.Linear) and module.in_features % 16 == 0 and module.out_features % 16 == 0


def convert(model: torch.nn.Module) -> int:
    """Swap the eligible linears of every decoder layer for torchao's Float8Linear (the embedding and head
    stay bf16, as torchtitan leaves them), on the meta model before a strategy wraps it: parameter names
    stay, so each rank still reads its own bytes of the checkpoint. The number swapped; none is an error
    (an fp8 cell that would run in bf16)."""
    from torchao.float8 import convert_to_float8_training
    from torchao.float8.float8_linear import Float8Linear

    from ftbench.train.layers import decoder_layers

    for layer in decoder_layers(model):
        convert_to_float8_training(layer, module_filter_fn=_eligible)
    swapped = sum(isinstance(m, Float8Linear) for m in model.modules())
    if not swapped:
        raise ValueError(f"fp8: no linear of {type(model).__name__}'s decoder layers takes float8 (GPT-2: Conv1D)")
    return swapped
