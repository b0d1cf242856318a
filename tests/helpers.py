"""What several test modules build: cells, the records the workflow carries for them, a run's summary."""

from pathlib import Path

import polars as pl

from ftbench.cell import GRAMMAR, Cell


def cell(strategy="ddp", gpus=1, method="full", precision="fp32", bs=8, seq=64, model="m", gbs=None, **axes) -> Cell:
    """A cell of model "m"; the global batch one micro-batch per GPU unless `gbs` is given; `axes`: optional
    axes (activation_checkpointing, tp_degree, shard_group)."""
    return Cell(model, strategy, gpus, method, precision, bs, seq, gbs or bs * gpus, **axes)


def record(cell_id: str) -> dict:
    """The record (`Cell.to_dict`) planning would carry for `cell_id`, its global batch one micro-batch per GPU."""
    p = GRAMMAR.parse(cell_id)
    optional = {a.field: p[a.field] for a in GRAMMAR.optional}
    numbers = int(p["gpus"]), p["method"], p["precision"], int(p["bs"]), int(p["seq"])
    return cell(p["strategy"], *numbers, model=p["model"], **optional).to_dict()


def summary(workdir: Path, run: str, key: str = "cell_id") -> dict[str, dict]:
    """A finished run's summary.csv, its rows by `key`."""
    frame = pl.read_csv(workdir / "results" / run / "summary.csv", infer_schema_length=None)
    return {row[key]: row for row in frame.iter_rows(named=True)}


def built(workdir: Path, kind: str, name: str) -> Path:
    """The one content-keyed directory (`<name>.<key>`, ftbench.plan.builds) a run built for `name`."""
    found = [p.parent for p in (Path(workdir) / "resources" / kind).glob(f"{name}.*/manifest.json")]
    assert len(found) == 1, found
    return found[0]
