import pytest

from ftbench.report import repeats, tables


def run(tok_s, status="ok", mem=1.0):
    return {"cell_id": "m/ddp/1gpu/x", "status": status, "train_tokens_per_s": tok_s, "peak_memory_gb": mem}


def test_merge_keeps_the_median_run_and_the_spread_of_each_timed_metric():
    merged = repeats.merge([run(1000.0, mem=1.2), run(900.0, mem=1.0), run(1100.0, mem=1.1)])
    assert merged["repeats"] == 3 and merged["repeat_of_median"] == 0
    assert (merged["train_tokens_per_s"], merged["train_tokens_per_s_min"], merged["train_tokens_per_s_max"]) == (
        1000.0,
        900.0,
        1100.0,
    )
    assert merged["peak_memory_gb"] == pytest.approx(1.1)
    assert merged["repeat_values"]["train_tokens_per_s"] == [1000.0, 900.0, 1100.0]


def test_a_repeat_that_ran_out_of_memory_makes_the_cell_oom():
    merged = repeats.merge([run(1000.0), run(None, status="oom"), run(1100.0)])
    assert merged["status"] == "oom" and merged["repeats_ok"] == 2
    assert merged["note"] == "1 of 3 repeats ended oom"


def test_tables_show_the_median_and_half_the_range():
    record = {**repeats.merge([run(1000.0), run(900.0), run(1100.0)]), "gpus": 1, "strategy": "ddp"}
    assert "| 1,000 ±10.0% |" in tables._row(record)
    assert "±" not in tables._row({**record, "repeats": 1})
