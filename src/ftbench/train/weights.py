"""Build a model without its weights, then fill only what this rank holds from the safetensors checkpoint.

Every strategy takes the same path (torchtitan's, for every strategy rather than FSDP alone):
1. `empty_model`: the architecture (and LoRA adapters) on the meta device; buffers are real, computed by the
   modules themselves, because a non-persistent buffer such as rotary `inv_freq` is in no checkpoint.
2. the strategy shards (FSDP), cuts (pipeline) or partitions (ZeRO-3, built under `zero.Init`) that model;
3. `materialize`: allocate what the rank holds on its device and read exactly those bytes from the files.

The read is a `pread` of each local tensor's own byte range (a DTensor shard is a run of rows, a ZeRO
partition a run of elements of the flattened parameter; a row-wise TP split, a block of columns, is read a
bounded slab of rows at a time): no memory map, so no file pages count towards the
rank's resident set, and no rank ever holds a tensor it does not keep. A parameter the checkpoint does not
hold is a LoRA adapter (initialised here, the same values at every world size) or an error naming it.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


SLAB_BYTES = 64 * 2**20
"""The most a block-of-columns read holds at once beside the block (`Checkpoint.read_block`)."""


@dataclass(frozen=True)
class Entry:
    """Where one tensor's bytes lie: `file` from byte `start`, row-major, `dtype` elements of `shape`."""

    file: Path
    start: int
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class Checkpoint:
    """The tensors of a Hugging Face model directory's safetensors files, by name, read from the headers only."""

    def __init__(self, model_dir: str | os.PathLike):
        self.dir = Path(model_dir)
        files = sorted(self.dir.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{self.dir}: no *.safetensors file (ftbench reads safetensors checkpoints only)")
        self.entries: dict[str, Entry] = {}
        for path in files:
            with open(path, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(length))
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                if info["dtype"] not in DTYPES:
                    raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, which ftbench cannot read")
                begin, _ = info["data_offsets"]
                self.entries[name] = Entry(path, 8 + length + begin, DTYPES[info["dtype"]], tuple(info["shape"]))
        self._fds: dict[Path, int] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def read(self, name: str, lo: int, out: torch.Tensor) -> None:
        """Elements [lo, lo + out.numel()) of the flattened tensor `name` into `out` (any device and dtype)."""
        entry = self.entries[name]
        n = out.numel()
        if lo < 0 or lo + n > entry.numel:
            raise ValueError(f"{name}: elements [{lo}, {lo + n}) outside its {entry.numel}")
        direct = out.device.type == "cpu" and out.dtype == entry.dtype and out.is_contiguous()
        buf = out if direct else torch.empty(n, dtype=entry.dtype)
        itemsize = entry.dtype.itemsize
        self._pread(entry.file, buf, entry.start + lo * itemsize, n * itemsize)
        if not direct:
            out.copy_(buf.view(out.shape))

    def read_block(self, name: str, out: torch.Tensor, offset: tuple[int, ...]) -> None:
        """The block of tensor `name` starting at `offset` (one index per dimension) with `out`'s shape, into
        `out`. A block split in its first (non-unit) dimension alone is one run of the file; a
        block of columns (a row-wise TP split) is read a bounded slab of whole rows at a time, so no more than
        `SLAB_BYTES` of the rows beside it is ever held."""
        shape = self.entries[name].shape
        split = [d for d, (n, full) in enumerate(zip(out.shape, shape, strict=True)) if n != full]
        first = split[0] if split else 0
        # one run: nothing split, or a run of the first split dimension's rows below whole leading dimensions
        if not split or (math.prod(shape[:first]) == 1 and len(split) == 1):
            lo = (offset[first] if shape else 0) * math.prod(shape[first + 1 :])
            self.read(name, lo, out.view(-1) if out.is_contiguous() else out)
            return
        if len(shape) != 2:
            raise ValueError(f"{name}: cannot read a block of columns of a {len(shape)}-d tensor")
        rows, columns = out.shape
        entry = self.entries[name]
        per_slab = max(1, SLAB_BYTES // (shape[1] * entry.dtype.itemsize))
        for r in range(0, rows, per_slab):
            n = min(per_slab, rows - r)
            slab = torch.empty(n, shape[1], dtype=entry.dtype)
            self.read(name, (offset[0] + r) * shape[1], slab)
            out[r : r + n].copy_(slab[:, offset[1] : offset[1] + columns])

    def _pread(self, path: Path, buf: torch.Tensor, offset: int, nbytes: int) -> None:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY)
        view = memoryview((ctypes.c_char * nbytes).from_address(buf.data_ptr())).cast("B")
        done = 0
        while done < nbytes:  # a single pread returns at most ~2 GiB
            got = os.preadv(fd, [view[done:]], offset + done)
            if got <= 0:
                raise OSError(f"{path}: file ends before byte {offset + nbytes} (truncated checkpoint?)")
            done += got

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def empty_model(
    model_dir: str | os.PathLike,
    method: str,
    options: dict,
    meta: bool = True,
    activation_checkpointing: str = "none",
) -> torch.nn.Module:
    """The model of `model_dir` with the fine-tuning method and activation checkpointing applied (each is part
    of what a strategy is handed, ZeRO-3's rebuild included), its parameters on the meta device (or,
    with meta=False, allocated but not initialised: for DeepSpeed's `zero.Init`, which partitions each module
    as it is built); buffers are real in both cases."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights

    from ftbench.train import layers, methods

    config = AutoConfig.from_pretrained(model_dir)

    def empty():
        return init_empty_weights(include_buffers=False) if meta else no_init_weights()

    with empty():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # tied input/output embeddings (GPT-2): the tie made while building got a fresh meta parameter from
    # init_empty_weights' patched register_parameter, so tie again outside it
    model.tie_weights()
    with empty():
        model = methods.apply(model, method, options)
    layers.checkpoint_activations(model, activation_checkpointing)
    if (Path(model_dir) / "generation_config.json").exists():
        model.generation_config = GenerationConfig.from_pretrained(model_dir)
    return model


def checkpoint_names(model: torch.nn.Module) -> dict[int, list[str]]:
    """Each parameter and buffer (by identity) -> the names it has in the full model. Taken before a strategy
    cuts the model (a pipeline stage renames its layers), so every tensor can still be found in the files."""
    names: dict[int, list[str]] = {}
    for name, tensor in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        names.setdefault(id(tensor), []).append(name)
    return names


def _candidates(name: str, base_prefix: str) -> list[str]:
    """A module path -> the names its tensor may have in the files: peft's wrapping and a `base_layer` level
    removed, with and without the model's base prefix (old GPT-2 files say `h.0...`, not `transformer.h.0...`)."""
    name = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
    out = [name]
    if base_prefix and name.startswith(base_prefix + "."):
        out.append(name[len(base_prefix) + 1 :])
    return out


def _local_part(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(what this rank stores of `tensor`, flattened; its first element's index in the flattened full tensor),
    for a plain tensor or a ZeRO-3 partition; a DTensor's block is `_dtensor_block`'s."""
    if hasattr(tensor, "ds_tensor"):  # a ZeRO-3 partition: its run of the flattened parameter
        import torch.distributed as dist

        part = tensor.ds_tensor
        lo = part.ds_numel * dist.get_rank(group=tensor.ds_process_group)
        return part.view(-1)[: max(0, min(part.ds_numel, tensor.ds_numel - lo))], lo
    return tensor.data.view(-1), 0


def _dtensor_block(tensor: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]] | None:
    """(this rank's block of a DTensor, shaped; the block's offset in each dimension of the full tensor), or
    None for a plain tensor. A block of rows (FSDP's dim-0 shard, a column-wise TP split), of columns (a
    row-wise split) or both (FSDP over TP)."""
    from torch.distributed.tensor import DTensor

    if not isinstance(tensor, DTensor):
        return None
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    local = tensor.to_local()
    _, offset = compute_local_shape_and_global_offset(tensor.shape, tensor.device_mesh, tensor.placements)
    return local, tuple(offset)


def _block_of(full: torch.Tensor, local: torch.Tensor, offset: tuple[int, ...]) -> torch.Tensor:
    return full[tuple(slice(o, o + n) for o, n in zip(offset, local.shape, strict=True))]


def full_shape(tensor: torch.Tensor) -> tuple[int, ...]:
    """The shape of the whole tensor, of which a rank may hold a part (a ZeRO-3 parameter's own is empty)."""
    return tuple(getattr(tensor, "ds_shape", tensor.shape))


def adapter_value(name: str, shape: torch.Size, seed: int) -> torch.Tensor:
    """A LoRA adapter's initial value, as peft initialises it (A: Kaiming-uniform, B: zeros), drawn from a
    generator seeded by the seed and the parameter's name: the same adapters at any world size and strategy."""
    if ".lora_B." in name:
        return torch.zeros(shape)
    if ".lora_A." not in name:
        raise KeyError(name)
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode(), seed))
    bound = 1 / math.sqrt(shape[1])  # kaiming_uniform_(a=sqrt(5)) on a (r, in_features) weight
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


@torch.no_grad()
def init_adapters(model: torch.nn.Module, seed: int) -> None:
    """Give a materialised model's LoRA adapters `adapter_value`s (a model loaded in full, not through `fill`)."""
    for name, param in model.named_parameters():
        if ".lora_" in name:
            param.copy_(adapter_value(name, param.shape, seed))


@torch.no_grad()
def materialize(
    module: torch.nn.Module,
    checkpoint: Checkpoint,
    device: torch.device,
    seed: int,
    names: dict[int, list[str]] | None = None,
    buffer_device: torch.device | None = None,
) -> None:
    """Allocate `module`'s meta parameters on `device` (only the local shard of a DTensor), keep its buffers'
    values (on `buffer_device`, default `device`: where the forward runs when the shards live on the host),
    then `fill` it. `names` (`checkpoint_names` of the model before a cut) where the module's own names are
    not the files' (a pipeline stage)."""
    buffers = [(mod, name, b) for mod in module.modules() for name, b in mod._buffers.items() if b is not None]
    tied = _tied(module)
    names = names or {}
    keys = {n: names.get(id(t), [n]) for n, t in [*module.named_parameters(), *module.named_buffers()]}
    module.to_empty(device=device)
    for mod, name, value in buffers:
        mod._buffers[name] = value.to(buffer_device or device)
    _retie(module, tied)
    fill(module, checkpoint, keys, seed)


def _tied(module: torch.nn.Module) -> list[list[tuple[torch.nn.Module, str]]]:
    """Parameters that several modules share (tied embeddings), as (module, attribute) places."""
    places: dict[int, list[tuple[torch.nn.Module, str]]] = {}
    for mod in module.modules():
        for name, p in mod._parameters.items():
            if p is not None:
                places.setdefault(id(p), []).append((mod, name))
    return [group for group in places.values() if len(group) > 1]


def _retie(module: torch.nn.Module, tied: list[list[tuple[torch.nn.Module, str]]]) -> None:
    """`to_empty` gives each module a parameter of its own: share the first place's again."""
    for (first, first_name), *others in tied:
        for mod, name in others:
            mod._parameters[name] = first._parameters[first_name]


@torch.no_grad()
def fill(module: torch.nn.Module, checkpoint: Checkpoint, keys: dict[str, list[str]], seed: int) -> None:
    """Read every parameter's local part from the checkpoint (buffers too, where it holds them). `keys`: a
    local name -> its names in the full model (`checkpoint_names`); default: the local names themselves."""
    base_prefix = getattr(module, "base_model_prefix", "") or ""

    def find(name: str) -> tuple[str, str | None]:
        full = keys.get(name, [name])
        return full[0], next((c for n in full for c in _candidates(n, base_prefix) if c in checkpoint), None)

    for name, param in module.named_parameters():
        full, found = find(name)
        if found is not None:
            _read(checkpoint, found, param)
        elif ".lora_" in full:
            value = adapter_value(full, full_shape(param), seed)
            block = _dtensor_block(param)
            if block is None:
                local, lo = _local_part(param)
                local.copy_(value.view(-1)[lo : lo + local.numel()])
            else:
                block[0].copy_(_block_of(value, *block))
        else:
            raise ValueError(f"{checkpoint.dir}: the checkpoint holds no tensor for parameter {full}")
    for name, buffer in module.named_buffers():  # the rest keep the values their modules computed
        _, found = find(name)
        if found is not None:
            _read(checkpoint, found, buffer)


def _read(checkpoint: Checkpoint, name: str, tensor: torch.Tensor) -> None:
    shape = checkpoint.entries[name].shape
    if shape != full_shape(tensor):
        raise ValueError(f"{checkpoint.dir}: {name} has shape {shape}, the model expects {full_shape(tensor)}")
    block = _dtensor_block(tensor)
    if block is None:
        local, lo = _local_part(tensor)
        checkpoint.read(name, lo, local)
    else:
        checkpoint.read_block(name, *block)


@dataclass
class Weights:
    """A cell's model: how to build it empty and where its weights are; what each strategy is handed."""

    model_dir: Path
    method: str
    options: dict
    seed: int
    on_loaded: Callable[[], None] | None = None
    """Called once the weights are in place (the end of a cell's setup phase, for its memory figures)."""
    activation_checkpointing: str = "none"

    def __post_init__(self):
        self.checkpoint = Checkpoint(self.model_dir)

    def _loaded(self) -> None:
        self.checkpoint.close()
        if self.on_loaded:
            self.on_loaded()

    def empty(self, meta: bool = True) -> torch.nn.Module:
        return empty_model(self.model_dir, self.method, self.options, meta, self.activation_checkpointing)

    def materialize(
        self,
        module: torch.nn.Module,
        device: torch.device,
        names: dict[int, list[str]] | None = None,
        buffer_device: torch.device | None = None,
    ) -> None:
        materialize(module, self.checkpoint, device, self.seed, names, buffer_device)
        self._loaded()

    def fill(self, module: torch.nn.Module) -> None:
        fill(module, self.checkpoint, {}, self.seed)
        self._loaded()
