"""A result says what it measured: metrics.json records its job spec's hash, and the summary marks a result
measured under another spec than the config's now (`stale`, e.g. left as it was by `select`)."""

import json

import polars as pl
from helpers import cell, record

from ftbench import record as records
from ftbench.report import aggregate, tables

SPEC = {"run_name": "r", "seed": 0, "cell": cell().to_dict(), "steps": {"warmup": 1, "measure": 30}, "options": {}}


def test_a_specs_hash_is_its_canonical_form():
    reordered = json.loads(json.dumps(SPEC, sort_keys=True))
    assert records.spec_hash(reordered) == records.spec_hash(SPEC) != records.spec_hash({**SPEC, "seed": 1})
    assert records.header(cell(), SPEC)["spec_hash"] == records.spec_hash(SPEC)


def test_spec_changes_names_each_differing_key_with_both_values():
    now = {**SPEC, "steps": {"warmup": 1, "measure": 7}, "options": {"lora": {"r": 16}}}
    assert records.spec_changes(SPEC, SPEC) is None
    assert records.spec_changes(SPEC, now) == "options.lora.r unset → 16, steps.measure 30 → 7"
    assert records.spec_changes(None, now) == records.SPEC_UNKNOWN
    many = {**now, "seed": 3, "run_name": "s"}
    assert records.spec_changes(SPEC, many, most=2) == 'options.lora.r unset → 16, run_name "r" → "s" and 2 more'


def write(runs, c, spec):
    path = runs / c.id / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"status": "ok", **records.header(c, spec), "train_tokens_per_s": 1.0, "config": spec}))
    return path


def test_the_summary_marks_results_measured_under_another_spec_and_the_table_names_them(tmp_path):
    old, new = cell(gpus=1), cell(gpus=2)
    spec_of = {c.id: {**SPEC, "cell": c.to_dict()} for c in (old, new)}
    paths = [write(tmp_path, old, spec_of[old.id]), write(tmp_path, new, spec_of[new.id])]
    current = [{**spec_of[old.id], "steps": {"warmup": 1, "measure": 7}}, spec_of[new.id]]
    frame = aggregate.collect([record(old.id), record(new.id)], paths, specs=current)
    assert frame.get_column("stale").to_list() == ["steps.measure 30 → 7", None]
    assert frame.get_column("status").to_list() == ["ok", "ok"]  # still counted as ok (pivots, charts)
    assert aggregate.collect([record(old.id)], paths[:1]).get_column("stale").to_list() == [None]  # no specs
    text = tables.render(frame)
    assert "| ok † |" in text and "| ok |" in text
    assert f"† `{old.id}`: measured under another spec (steps.measure 30 → 7)." in text
    assert pl.DataFrame({"cell_id": ["x"], "status": ["ok"]}).pipe(tables.stale_block) == ""
