"""Planning (`snakemake -n`) stays light: the modules the Snakefile imports never pull in the heavy stack."""

import dataclasses
import re
import subprocess
import sys

import pytest

from ftbench import matrix
from ftbench.config import Cell, ConfigError

HEAVY = ("polars", "torch", "transformers", "altair", "deepspeed", "peft", "pandas", "numpy")


def test_the_modules_the_snakefile_imports_leave_the_heavy_stack_out(repo):
    sources = [repo / "Snakefile", *sorted((repo / "rules").glob("*.smk"))]
    modules = sorted(
        {m for path in sources for m in re.findall(r"^from (ftbench[\w.]*) import", path.read_text(), re.M)}
    )
    assert "ftbench.matrix" in modules
    heavy = f"sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})"
    probe = f"import sys; import {', '.join(modules)}; print({heavy})"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]", f"{modules} import {out.strip()}"


def test_the_pivot_check_accepts_summary_columns_and_names_the_bad_one():
    pivots = [
        {"title": "t", "rows": ["strategy", "method"], "columns": "gpus", "value": "train_tokens_per_s"},
        {"title": "u", "rows": "model", "columns": "precision", "value": "peak_memory_gb", "filter": {"gpus": [2]}},
    ]
    matrix.check_pivots(pivots)
    with pytest.raises(ConfigError, match=r"report.pivots\[1\].filter: 'dtype' is not a summary column"):
        matrix.check_pivots([pivots[0], {**pivots[1], "filter": {"dtype": ["bf16"]}}])


def test_cell_all_fields_is_its_fields_in_order():
    cell = Cell("m", "zero3", 16, "lora", "bf16", 4, 1024, 128, "full")
    assert cell.all_fields() == dataclasses.asdict(cell) == cell.to_dict()
    assert list(cell.all_fields()) == [f.name for f in dataclasses.fields(Cell)]
