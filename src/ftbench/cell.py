"""The cell: one training job of the matrix. Each of its fields that is a matrix axis carries its declaration
(`axis(...)`), and everything that lists the axes derives from those: the id grammar (`Grammar`), the
matrix product (ftbench.plan.matrix), the summary's key columns (ftbench.plan.config.summary_columns),
pending and pruned rows (`Cell.key_row`), the charts' grouping and panels and the tables' columns."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import typing
from dataclasses import MISSING, dataclass, field, fields

from ftbench.errors import ConfigError
from ftbench.registry import STRATEGIES, Mesh

CELL_PATTERN = "{model}/{strategy}/{gpus}gpu/{method}-{precision}-bs{bs}-seq{seq}"
"""The cell id's fixed part (its wildcards are the fixed axes' `wildcard`s); also the cell's directory under
results/<run_name>/runs/. Optional axes follow it as segments, only where they differ from their defaults."""


@dataclass(frozen=True)
class Axis:
    """What every stage needs to know of one axis of the matrix."""

    field: str
    """The `Cell` field, and the summary column of the same name."""
    kind: type
    """int or str: the value's type in the config, the summary and a parsed id."""
    default: object = MISSING
    """The value of a config that leaves the axis out (MISSING: always set); an optional axis's field default."""
    key: str | None = None
    """`matrix.<key>`, the list the product sweeps (micro-batches: a model's own value wins over it); None: the
    models[] list."""
    wildcard: str | None = None
    """A fixed axis: its name in CELL_PATTERN (and in the rules' wildcards)."""
    tag: str | None = None
    """An optional axis: its id segment `-<tag>-<value>`, written only off the default, so adding an axis
    leaves every existing cell id (and directory, and job spec) as it was."""
    value_re: str = r"[a-z0-9.]+"
    """What its value may be in an id (an int axis: digits)."""
    header: str | None = None
    """An optional axis: its README table column, shown for a model with a cell off the default; axes with the
    same header share one column of `<label><value>` parts."""
    after: str | None = None
    """The table column its column follows."""
    label: str = ""
    """Its value's prefix in a chart panel's name and a shared table column (`tp `: `tp 4`)."""
    panel: bool = True
    """A run that varies it gets one chart panel per value (False: a line, a bar or the chart itself)."""
    mesh: bool = False
    """Swept only by the strategies whose mesh kind names it (`registry.MeshKind.sweeps`); the default elsewhere."""

    @property
    def optional(self) -> bool:
        return self.tag is not None

    def values(self, matrix: dict, strategy: str) -> list:
        """The values the product takes for one strategy's cells."""
        if self.mesh and STRATEGIES[strategy].mesh.sweeps != self.field:
            return [self.default]
        return list(matrix.get(self.key, [self.default]))


def axis(default=MISSING, unset=MISSING, **declaration) -> dataclasses.Field:
    """A `Cell` field that is a matrix axis: `declaration` is its `Axis` (field and kind come from the field).
    `default`: an optional axis's field default; `unset`: a fixed axis's value when its key is left out."""
    return field(
        default=default, metadata={"axis": {"default": unset if default is MISSING else default, **declaration}}
    )


@functools.cache
def axes_of(cell_type: type) -> tuple[Axis, ...]:
    """A cell type's axes, in field order: the order of the product, the summary and the optional segments."""
    hints = typing.get_type_hints(cell_type)
    digits = {"value_re": "[0-9]+"}
    return tuple(
        Axis(f.name, hints[f.name], **(digits if hints[f.name] is int else {}) | f.metadata["axis"])
        for f in fields(cell_type)
        if "axis" in f.metadata
    )


@dataclass(frozen=True)
class Grammar:
    """The id of a cell type: `Cell.id`, `parse` and the rules' `{options}` wildcard constraint."""

    axes: tuple[Axis, ...]

    @property
    def optional(self) -> tuple[Axis, ...]:
        return tuple(a for a in self.axes if a.optional)

    def _segments_re(self, named: bool) -> str:
        """The optional segments as a regular expression, each value a named group (the parser) or not (the
        rules' wildcard, which Snakemake wraps in a group of its own)."""
        return "".join(f"(?:-{a.tag}-({f'?P<{a.field}>' if named else '?:'}{a.value_re}))?" for a in self.optional)

    @property
    def options_wildcard(self) -> str:
        """The rules' constraint on the `{options}` wildcard after `seq{seq}` (empty at every default)."""
        return self._segments_re(named=False)

    def optional_segments(self, values: dict) -> str:
        """The id's optional part for field values `values` (missing fields are at their defaults)."""
        return "".join(
            f"-{a.tag}-{values[a.field]}" for a in self.optional if values.get(a.field, a.default) != a.default
        )

    def cell_id(self, values: dict) -> str:
        fixed = {a.wildcard: values[a.field] for a in self.axes if not a.optional}
        return CELL_PATTERN.format(**fixed) + self.optional_segments(values)

    @functools.cached_property
    def _cell_re(self) -> re.Pattern:
        pattern = re.escape(CELL_PATTERN).replace(r"\{", "{").replace(r"\}", "}")
        for a in self.axes:
            if not a.optional:
                pattern = pattern.replace(f"{{{a.wildcard}}}", f"(?P<{a.wildcard}>{a.value_re})")
        return re.compile(f"^{pattern}{self._segments_re(named=True)}$")

    def parse(self, cell_id: str) -> dict:
        """Split a cell id into its wildcard values (strings; optional fields as their `kind`, at their
        defaults where absent), or raise ValueError."""
        m = self._cell_re.match(cell_id)
        if not m:
            raise ValueError(f"not a cell id: {cell_id!r} (expected {CELL_PATTERN}[optional -<tag>-<value> segments])")
        parts = m.groupdict()
        for a in self.optional:
            parts[a.field] = a.kind(parts[a.field]) if parts[a.field] else a.default
        return parts


@dataclass(frozen=True)
class Cell:
    """One training job of the matrix."""

    model: str = axis(wildcard="model", value_re="[^/]+", panel=False)
    """Model name from `models[].name`."""
    strategy: str = axis(key="strategies", wildcard="strategy", value_re="[^/]+", panel=False)
    """Parallelism strategy (matrix.strategies)."""
    gpus: int = axis(key="gpus", wildcard="gpus", panel=False)
    """World size: GPUs, or gloo processes on CPU."""
    method: str = axis(unset="full", key="method", wildcard="method", value_re="[^-/]+")
    """Fine-tuning method: `full` (all parameters) or `lora`."""
    precision: str = axis(unset="fp32", key="precision", wildcard="precision", value_re="[^-/]+")
    """`fp32`; `bf16`, `fp16` (loss-scaled) or `fp8` (torchao float8 linears) with fp32 master weights
    (ftbench.precision)."""
    batch_size_per_gpu: int = axis(key="batch_size_per_gpu", wildcard="bs", panel=False)
    """Micro-batch per data-parallel rank, in samples of `seq_len` tokens (planning: the model's, else
    matrix.batch_size_per_gpu, else the top level's)."""
    seq_len: int = axis(key="seq_len", wildcard="seq")
    """Tokens per sample (packed blocks, no padding)."""
    global_batch_size: int
    """Samples per optimizer step over all ranks (planning: derived, not an axis)."""
    activation_checkpointing: str = axis(
        "none", key="activation_checkpointing", tag="ac", header="act. ckpt", after="batch/GPU", label="ckpt "
    )
    """`none`, or `full`: every decoder layer's activations recomputed in backward (matrix axis)."""
    tp_degree: int = axis(0, key="tp_degree", tag="tp", header="mesh", after="ZeRO", label="tp ", mesh=True)
    """fsdp_tp: ranks per tensor-parallel group (matrix axis); 0: the default (`registry.default_inner_degree`)."""
    shard_group: int = axis(0, key="shard_group", tag="sg", header="mesh", after="ZeRO", label="sg ", mesh=True)
    """hsdp: ranks per shard group (matrix axis); 0: the default (`registry.default_inner_degree`)."""

    @functools.cached_property
    def mesh(self) -> Mesh:
        strategy = STRATEGIES[self.strategy]
        return strategy.mesh_at(self.gpus, getattr(self, strategy.mesh.sweeps) if strategy.mesh.sweeps else 0)

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

    @classmethod
    def axes(cls) -> tuple[Axis, ...]:
        return axes_of(cls)

    @classmethod
    def grammar(cls) -> Grammar:
        return _grammar(cls)

    @property
    def id(self) -> str:
        return self.grammar().cell_id(self.all_fields())

    def all_fields(self) -> dict:
        # the fields are plain values: no deep copy (dataclasses.asdict) needed
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict:
        """The cell's record, carried to the job, to aggregation and to pending rows: its fields, optional
        axes only off their defaults, so the job spec of a cell at every default is what it was before those
        axes existed and a finished cell does not re-run."""
        defaults = {a.field: a.default for a in self.axes() if a.optional}
        return {k: v for k, v in self.all_fields().items() if k not in defaults or v != defaults[k]}

    @classmethod
    def from_dict(cls, record: dict, where: str = "cell") -> Cell:
        """The one parser of a cell record (a job spec's `cell`, aggregation's params): unknown or missing
        fields, a wrong type or an unknown strategy are refused naming `where`."""
        names = {f.name: f for f in fields(cls)}
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(record) - set(names))
        missing = sorted(n for n, f in names.items() if f.default is MISSING and n not in record)
        if unknown or missing:
            raise ConfigError(f"{where}: unknown fields {unknown}, missing fields {missing} in {record}")
        for name, value in record.items():
            if type(value) is not hints[name]:  # bool is not an int here, nor "2" a 2
                raise ConfigError(f"{where}.{name}: {value!r} is not of type {hints[name].__name__}")
        if record["strategy"] not in STRATEGIES:
            raise ConfigError(f"{where}.strategy: unknown strategy {record['strategy']!r}")
        return cls(**record)

    @classmethod
    def key_row(cls, record: dict, status: str) -> dict:
        """The summary row of a cell without metrics (pending, failed, pruned): its id and axes."""
        cell = cls(**record)
        return {"cell_id": cell.id, **{a.field: getattr(cell, a.field) for a in cls.axes()}, "status": status}


@functools.cache
def _grammar(cell_type: type) -> Grammar:
    return Grammar(axes_of(cell_type))


AXES = Cell.axes()
GRAMMAR = Cell.grammar()
OPTIONS_WILDCARD = GRAMMAR.options_wildcard
"""The rules' constraint on the `{options}` wildcard after `seq{seq}` (empty for a cell at every default)."""


def parse_cell_id(cell_id: str) -> dict:
    """`GRAMMAR.parse`: a cell id's wildcard values."""
    return GRAMMAR.parse(cell_id)


SPEC_KEYS = ("run_name", "seed", "cell", "steps", "optimizer", "generation", "options", "hardware")


def parse_job_spec(text: str) -> tuple[dict, Cell]:
    """A training job's spec (ftbench.plan.matrix.job_spec, the train rule's `--spec`) and its cell: the one
    parser, which the launcher and the job each call once. A missing key or a malformed cell is refused naming
    it."""
    try:
        spec = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"--spec: not JSON ({e})") from e
    missing = [key for key in SPEC_KEYS if key not in spec] if isinstance(spec, dict) else list(SPEC_KEYS)
    if missing:
        raise ConfigError(f"--spec: missing {', '.join(missing)} (a job spec is ftbench.plan.matrix.job_spec's)")
    return spec, Cell.from_dict(spec["cell"], where="--spec cell")
