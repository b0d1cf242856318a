"""Planning (`snakemake -n`) stays light: the modules the Snakefile imports never pull in the heavy stack."""

import dataclasses
import re
import subprocess
import sys

import pytest

from ftbench.cell import Cell
from ftbench.errors import ConfigError
from ftbench.plan import matrix

HEAVY = ("polars", "torch", "transformers", "altair", "deepspeed", "peft", "pandas", "numpy")


def test_the_modules_the_snakefile_imports_leave_the_heavy_stack_out(repo):
    sources = [repo / "Snakefile", *sorted((repo / "rules").glob("*.smk"))]
    modules = sorted(
        {m for path in sources for m in re.findall(r"^from (ftbench[\w.]*) import", path.read_text(), re.M)}
    )
    assert "ftbench.plan.matrix" in modules
    heavy = f"sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})"
    probe = f"import sys; import {', '.join(modules)}; print({heavy})"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]", f"{modules} import {out.strip()}"


# what each stage's modules may not import (its env lacks them, or planning must stay fast)
STAGE_BANS = {
    "plan": ("polars", "torch", "transformers", "altair", "deepspeed", "peft", "pandas", "numpy"),
    "report": ("torch", "transformers", "deepspeed", "peft"),
}


# the shared contract at the top (cell, record, registry, files, ...) is read by every stage and env
CONTRACT = ("cell", "record", "registry", "errors", "files", "peaks", "logs")


@pytest.mark.parametrize("stage", [*sorted(STAGE_BANS), "contract"])
def test_every_module_of_a_stage_leaves_out_what_it_must_not_import(repo, stage):
    if stage == "contract":
        modules, banned = [f"ftbench.{name}" for name in CONTRACT], STAGE_BANS["plan"]
    else:
        package = repo / "src" / "ftbench" / stage
        modules = sorted(f"ftbench.{stage}.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__")
        banned = STAGE_BANS[stage]
    assert len(modules) >= 5, modules
    heavy = f"sorted(m for m in sys.modules if m.split('.')[0] in {banned!r})"
    probe = f"import sys; import {', '.join(modules)}; print({heavy})"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]", f"ftbench.{stage} imports {out.strip()}"


def test_the_pivot_check_accepts_summary_columns_and_names_the_bad_one():
    pivots = [
        {"title": "t", "rows": ["strategy", "method"], "columns": "gpus", "value": "train_tokens_per_s"},
        {"title": "u", "rows": "model", "columns": "precision", "value": "peak_memory_gb", "filter": {"gpus": [2]}},
    ]
    matrix.check_pivots(pivots)
    with pytest.raises(ConfigError, match=r"report.pivots\[1\].filter: 'dtype' is not a summary column"):
        matrix.check_pivots([pivots[0], {**pivots[1], "filter": {"dtype": ["bf16"]}}])


def test_cell_all_fields_is_its_fields_in_order():
    cell = Cell("m", "fsdp_tp", 16, "lora", "bf16", 4, 1024, 128, "full", 4, 2)
    assert cell.all_fields() == dataclasses.asdict(cell) == cell.to_dict()
    assert list(cell.all_fields()) == [f.name for f in dataclasses.fields(Cell)]
