import polars as pl

from ftbench.report import compare


def summary(tok_s=1000.0, mem=1.0, status="ok"):
    return pl.DataFrame(
        [
            {"cell_id": "m/ddp/1gpu/a", "status": "ok", "train_tokens_per_s": 500.0, "peak_memory_gb": 2.0},
            {"cell_id": "m/ddp/2gpu/a", "status": status, "train_tokens_per_s": tok_s, "peak_memory_gb": mem},
        ]
    )


def test_an_identical_run_flags_nothing_and_passes_the_gate(tmp_path):
    summary().write_csv(tmp_path / "a.csv")
    summary().write_csv(tmp_path / "b.csv")
    assert compare.main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--gate"]) == 0
    result = compare.compare(summary(), summary(), 0.1)
    assert result.regressions == [] and result.improvements == []
    assert result.rows[1]["ratios"] == {"train tok/s": 1.0, "memory": 1.0}


def test_a_planted_regression_is_flagged_and_fails_the_gate(tmp_path, capsys):
    summary(tok_s=800.0, mem=1.05).write_csv(tmp_path / "new.csv")
    summary().write_csv(tmp_path / "ref.csv")
    out = tmp_path / "compare.md"
    assert compare.main([str(tmp_path / "new.csv"), str(tmp_path / "ref.csv"), "--gate", "--out", str(out)]) == 1
    text = out.read_text()
    assert "| m/ddp/2gpu/a | ok | 0.800 | — | 1.050 | — | — | regression: train tok/s ×0.80 |" in text
    assert "1 regression(s), 0 improvement(s)." in text
    assert "m/ddp/2gpu/a: train tok/s ×0.80" in capsys.readouterr().err
    # without the gate the same comparison is a report, not a failure
    assert compare.main([str(tmp_path / "new.csv"), str(tmp_path / "ref.csv")]) == 0


def test_lower_memory_is_an_improvement_and_a_cell_that_now_ooms_is_a_regression():
    better = compare.compare(summary(mem=0.5), summary(), 0.1)
    assert better.improvements == ["m/ddp/2gpu/a: memory ×0.50"] and not better.regressions
    worse = compare.compare(summary(tok_s=None, status="oom"), summary(), 0.1)
    assert worse.regressions == ["m/ddp/2gpu/a: status ok → oom"]


def test_cells_on_one_side_only_are_listed():
    new = summary().filter(pl.col("cell_id") == "m/ddp/1gpu/a")
    rows = compare.compare(new, summary(), 0.1).rows
    assert [r["status"] for r in rows] == ["ok", "only in reference (ok)"]
