"""Datasheet peak dense FLOP/s per GPU model and precision (no sparsity), with sources. fp32 is the
non-tensor-core FP32 rate (torch's default matmul does not use TF32)."""

from __future__ import annotations

from ftbench.precision import MIXED, PRECISIONS

T = 1e12
# (substring of torch.cuda.get_device_name, {precision: FLOP/s}, source); first match wins, most specific first
DATASHEET = [
    # fp8 dense where the GPU has it (Hopper, Ada); fp16 only where it differs from bf16 (Precision.datasheet)
    (
        "H100 PCIe",
        {"fp32": 51 * T, "bf16": 756 * T, "fp8": 1513 * T},
        "https://www.nvidia.com/en-us/data-center/h100/",
    ),
    (
        "H100 NVL",
        {"fp32": 60 * T, "bf16": 835 * T, "fp8": 1671 * T},
        "https://www.nvidia.com/en-us/data-center/h100/",
    ),
    (
        "H100",
        {"fp32": 67 * T, "bf16": 989 * T, "fp8": 1979 * T},
        "https://www.nvidia.com/en-us/data-center/h100/ (SXM)",
    ),
    (
        "H200 NVL",
        {"fp32": 60 * T, "bf16": 835 * T, "fp8": 1671 * T},
        "https://www.nvidia.com/en-us/data-center/h200/",
    ),
    (
        "H200",
        {"fp32": 67 * T, "bf16": 989 * T, "fp8": 1979 * T},
        "https://www.nvidia.com/en-us/data-center/h200/ (SXM)",
    ),
    ("A100", {"fp32": 19.5 * T, "bf16": 312 * T}, "https://www.nvidia.com/en-us/data-center/a100/"),
    (
        "L40S",
        {"fp32": 91.6 * T, "bf16": 362 * T, "fp8": 733 * T},
        "https://www.nvidia.com/en-us/data-center/l40s/",
    ),
    (
        "L4",
        {"fp32": 30.3 * T, "bf16": 121 * T, "fp8": 242.5 * T},
        "https://www.nvidia.com/en-us/data-center/l4/",
    ),
    ("V100", {"fp32": 15.7 * T, "fp16": 125 * T}, "https://www.nvidia.com/en-us/data-center/v100/ (SXM2; no bf16)"),
]


def datasheet_peak(device_model: str | None, precision: str) -> tuple[float | None, str | None]:
    """(peak FLOP/s, source) for a GPU name and precision; (None, None) when unknown or not a GPU."""
    if not device_model:
        return None, None
    for needle, peaks, source in DATASHEET:
        if needle in device_model:
            row = PRECISIONS.get((precision, MIXED))
            keys = [key for key in (row.datasheet if row else (precision,)) if key in peaks]
            return (peaks[keys[0]] if keys else None), source
    return None, None
