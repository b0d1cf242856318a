"""The cell: one training job of the matrix, its id grammar and the one pattern the rules import."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from ftbench.registry import STRATEGIES, Mesh, mesh_of

CELL_PATTERN = "{model}/{strategy}/{gpus}gpu/{method}-{precision}-bs{bs}-seq{seq}"
"""The cell id's fixed part; also the directory of the cell under results/<run_name>/runs/. Optional fields
follow it as segments (`OPTIONAL_SEGMENTS`), only where they differ from their defaults."""


@dataclass(frozen=True)
class IdSegment:
    """An optional field of the cell id: `-<tag>-<value>`, written only when the value is not the default, so
    adding an axis leaves every existing cell id (and directory, and job spec) as it was."""

    field: str
    """The `Cell` field."""
    tag: str
    default: object
    value_re: str = r"[a-z0-9.]+"
    kind: type = str
    """The value's type in a parsed id (the fixed fields stay strings)."""


OPTIONAL_SEGMENTS: tuple[IdSegment, ...] = (
    IdSegment("activation_checkpointing", "ac", "none"),
    IdSegment("tp_degree", "tp", 0, r"[0-9]+", int),
    IdSegment("shard_group", "sg", 0, r"[0-9]+", int),
)
"""Optional id segments, in the order they follow `seq<n>`. The one grammar: `Cell.id`, `parse_cell_id` and
the rules' `{options}` wildcard (`OPTIONS_WILDCARD`) are all built from it."""


def _segments_re(named: bool) -> str:
    """The optional segments as a regular expression, each value a named group (the parser) or not (the rules'
    wildcard constraint, which Snakemake wraps in a group of its own)."""
    return "".join(f"(?:-{s.tag}-({f'?P<{s.field}>' if named else '?:'}{s.value_re}))?" for s in OPTIONAL_SEGMENTS)


OPTIONS_WILDCARD = _segments_re(named=False)
"""The rules' constraint on the `{options}` wildcard after `seq{seq}` (empty for a cell at every default)."""


def optional_segments(values: dict) -> str:
    """The id's optional part for field values `values` (missing fields are at their defaults)."""
    return "".join(
        f"-{s.tag}-{values[s.field]}" for s in OPTIONAL_SEGMENTS if values.get(s.field, s.default) != s.default
    )


@dataclass(frozen=True)
class Cell:
    """One training job of the matrix."""

    model: str
    """Model name from `models[].name`."""
    strategy: str
    """Parallelism strategy (matrix.strategies)."""
    gpus: int
    """World size: GPUs, or gloo processes on CPU."""
    method: str
    """Fine-tuning method: `full` (all parameters)."""
    precision: str
    """`fp32`; `bf16`, `fp16` (loss-scaled) or `fp8` (torchao float8 linears) with fp32 master weights."""
    batch_size_per_gpu: int
    """Micro-batch per data-parallel rank, in samples of `seq_len` tokens."""
    seq_len: int
    """Tokens per sample (packed blocks, no padding)."""
    global_batch_size: int
    """Samples per optimizer step over all ranks."""
    activation_checkpointing: str = "none"
    """`none`, or `full`: every decoder layer's activations recomputed in backward (matrix axis)."""
    tp_degree: int = 0
    """fsdp_tp: ranks per tensor-parallel group (matrix axis); 0: the default (`registry.default_inner_degree`)."""
    shard_group: int = 0
    """hsdp: ranks per shard group (matrix axis); 0: the default (`registry.default_inner_degree`)."""

    @property
    def mesh(self) -> Mesh:
        return mesh_of(self.strategy, self.gpus, self.tp_degree, self.shard_group)

    @property
    def data_parallel_size(self) -> int:
        """Ranks that read different samples: every rank; one shard for a pipeline or a TP group; the
        data-parallel groups of fsdp_tp."""
        return self.mesh.data_parallel

    @property
    def zero_stage(self) -> int | None:
        return STRATEGIES[self.strategy].zero_stage

    @property
    def grad_accum_steps(self) -> int:
        return self.global_batch_size // (self.batch_size_per_gpu * self.data_parallel_size)

    @property
    def tokens_per_step(self) -> int:
        """Training tokens per optimizer step, each counted once for the whole job."""
        return self.global_batch_size * self.seq_len

    @property
    def id(self) -> str:
        return CELL_PATTERN.format(
            model=self.model,
            strategy=self.strategy,
            gpus=self.gpus,
            method=self.method,
            precision=self.precision,
            bs=self.batch_size_per_gpu,
            seq=self.seq_len,
        ) + optional_segments(self.all_fields())

    def all_fields(self) -> dict:
        # the fields are plain values: no deep copy (dataclasses.asdict) needed
        return {name: getattr(self, name) for name in CELL_FIELDS}

    def to_dict(self) -> dict:
        """The fields, optional ones only where they differ from their defaults: the job spec of a cell at
        every default is what it was before those fields existed, so a finished cell does not re-run."""
        defaults = {s.field: s.default for s in OPTIONAL_SEGMENTS}
        return {k: v for k, v in self.all_fields().items() if k not in defaults or v != defaults[k]}


CELL_FIELDS = tuple(f.name for f in fields(Cell))


_CELL_RE = re.compile(
    r"^(?P<model>[^/]+)/(?P<strategy>[^/]+)/(?P<gpus>\d+)gpu/"
    r"(?P<method>[^-/]+)-(?P<precision>[^-/]+)-bs(?P<bs>\d+)-seq(?P<seq>\d+)" + _segments_re(named=True) + "$"
)


def parse_cell_id(cell_id: str) -> dict:
    """Split a cell id into its wildcard values (strings; optional fields as their segment's `kind`, at their
    defaults where absent), or raise ValueError."""
    m = _CELL_RE.match(cell_id)
    if not m:
        raise ValueError(f"not a cell id: {cell_id!r} (expected {CELL_PATTERN}[optional -<tag>-<value> segments])")
    parts = m.groupdict()
    for s in OPTIONAL_SEGMENTS:
        parts[s.field] = s.kind(parts[s.field]) if parts[s.field] else s.default
    return parts
