import polars as pl
import pytest

from ftbench import aggregate, tables

BEGIN, END = tables.markers("r")
README = "# Title\n\nhand-written intro\n\n{begin}\nold table\n{end}\n\n## After\ntrailing text, kept\n"


def summary():
    ok = {
        "cell_id": "m/ddp/1gpu/full-fp32-bs8-seq128",
        "model": "m",
        "strategy": "ddp",
        "gpus": 1,
        "method": "full",
        "precision": "fp32",
        "batch_size_per_gpu": 8,
        "seq_len": 128,
        "status": "ok",
        "zero_stage": None,
        "global_batch_size": 8,
        "run_duration_s": 12.34,
        "train_tokens_per_s": 12345.6,
        "inference_tokens_per_s": 800.2,
        "peak_memory_gb": 0.51234,
        "train_loss_avg": 7.1234,
        "eval_perplexity": 1234.567,
        "mfu_measured": 0.1234,
        "run_name": "r",
        "start_time": "2026-11-22T00:00:00+00:00",
        "git_commit": "0123456789abcdef",
        "cpu_model": "Xeon",
        "device": "cpu",
        "torch_version": "2.13.0",
        "transformers_version": "5.0",
    }
    pending = aggregate.pending_row("m/ddp/2gpu/full-fp32-bs8-seq128")
    other = {**ok, "model": "n", "cell_id": "n/ddp/1gpu/full-fp32-bs8-seq128"}
    return pl.DataFrame([ok, pending, other], infer_schema_length=None)


def test_render_makes_one_table_per_model_with_the_users_columns():
    text = tables.render(summary())
    assert text.count("| n×GPU | strategy | ZeRO |") == 2
    assert "#### m" in text and "#### n" in text
    assert (
        "| 1 | ddp | — | full | fp32 | 128 | 8 | 8 | 12.3 | 12,346 | 800 | 0.51 | 7.123 | 1234.57 | 12.3% | ok |"
        in text
    )
    assert "| 2 | ddp | — | full | fp32 | 128 | 8 | — | — | — | — | — | — | — | — | pending |" in text
    assert "commit `0123456789ab`" in text and "torch 2.13.0" in text
    assert tables.render(summary()) == text  # same summary, same bytes


def test_splice_touches_only_the_marked_section():
    old = README.format(begin=BEGIN, end=END)
    new = tables.splice(old, "| new |\n", "r")
    assert new == old.replace("old table\n", "| new |\n")
    assert tables.splice(new, "| new |\n", "r") == new


def test_splice_appends_a_marked_section_when_there_is_none():
    new = tables.splice("# Title\nintro\n", "T\n", "r")
    assert new == f"# Title\nintro\n\n{BEGIN}\nT\n{END}\n"


@pytest.mark.parametrize(
    "text",
    [
        f"{BEGIN}\nno end\n",
        f"{END}\n{BEGIN}\n",
        f"{BEGIN}\n{BEGIN}\n{END}\n",
    ],
)
def test_unbalanced_markers_are_an_error_and_the_file_is_left_alone(tmp_path, text):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    csv = tmp_path / "summary.csv"
    summary().write_csv(csv)
    with pytest.raises(ValueError, match="unbalanced"):
        tables.publish(csv, tmp_path / "docs" / "summary.csv", readme, tmp_path / "tables.md", "r")
    assert readme.read_text() == text


def test_publish_renders_from_the_docs_copy_and_is_idempotent(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README.format(begin=BEGIN, end=END))
    csv = tmp_path / "summary.csv"
    summary().write_csv(csv)
    tables.publish(csv, tmp_path / "docs" / "r" / "summary.csv", readme, tmp_path / "tables.md", "r")
    first = readme.read_bytes()
    assert (tmp_path / "docs" / "r" / "summary.csv").read_bytes() == csv.read_bytes()
    assert (tmp_path / "tables.md").read_text() in first.decode()
    assert first.decode().endswith("## After\ntrailing text, kept\n")
    tables.publish(csv, tmp_path / "docs" / "r" / "summary.csv", readme, tmp_path / "tables.md", "r")
    assert readme.read_bytes() == first


def test_sections_of_other_runs_are_left_alone():
    other_begin, other_end = tables.markers("gpu-cluster")
    text = f"{other_begin}\ngpu table\n{other_end}\n\n{BEGIN}\nold\n{END}\n"
    assert tables.splice(text, "new\n", "r") == f"{other_begin}\ngpu table\n{other_end}\n\n{BEGIN}\nnew\n{END}\n"
