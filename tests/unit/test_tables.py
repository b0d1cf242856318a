import re

import polars as pl
import pytest
import yaml
from helpers import record

from ftbench.errors import ConfigError
from ftbench.plan import matrix
from ftbench.report import aggregate, tables

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
        "epoch_s": 45.67,
        "train_tokens_per_s": 12345.6,
        "eval_tokens_per_s": 40123.4,
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
    pending = aggregate.pending_row(record("m/ddp/2gpu/full-fp32-bs8-seq128"))
    other = {**ok, "model": "n", "cell_id": "n/ddp/1gpu/full-fp32-bs8-seq128"}
    return pl.DataFrame([ok, pending, other], infer_schema_length=None)


def test_render_makes_one_table_per_model_with_the_users_columns():
    text = tables.render(summary())
    assert text.count("| n×GPU | strategy | ZeRO |") == 2
    assert "#### m" in text and "#### n" in text
    # bench_pie's epoch (one pass over the data) and eval-forward tokens/s, beside the run and greedy decoding
    assert (
        "| epoch (s) | run (s) | train tok/s | eval fwd tok/s | decode tok/s | memory (GB) | loss | perplexity |"
        in text
    )
    assert (
        "| 1 | ddp | — | full | fp32 | 128 | 8 | 8 | 45.7 | 12.3 | 12,346 | 40,123 | 800 | 0.51 | 7.123 | 1234.57 "
        "| 12.3% | ok |" in text
    )
    assert "| 2 | ddp | — | full | fp32 | 128 | 8 | — | — | — | — | — | — | — | — | — | — | pending |" in text
    assert "commit `0123456789ab`" in text and "torch 2.13.0" in text
    assert tables.render(summary()) == text  # same summary, same bytes


def test_a_mesh_column_appears_only_for_a_model_with_a_set_mesh_shape():
    frame = summary()
    assert "| mesh |" not in tables.render(frame)
    meshed = [
        {
            **frame.row(0, named=True),
            "strategy": "fsdp_tp",
            "gpus": 8,
            "tp_degree": tp,
            "shard_group": 0,
            "cell_id": f"m/fsdp_tp/8gpu/full-fp32-bs8-seq128{suffix}",
        }
        for tp, suffix in ((0, ""), (4, "-tp-4"))
    ]
    text = tables.render(pl.concat([frame, pl.DataFrame(meshed)], how="diagonal_relaxed"))
    section_m, section_n = text.split("#### n")
    assert "| ZeRO | mesh | method |" in section_m and "| 8 | fsdp_tp | — | tp 4 | full |" in section_m
    assert "| 8 | fsdp_tp | — | — | full |" in section_m  # the default shape
    assert "mesh" not in section_n


def test_checkpointing_columns_appear_only_for_a_model_that_checkpoints():
    frame = summary()
    plain = tables.render(frame)
    assert "act. ckpt" not in plain and "HFU" not in plain
    checkpointed = {
        **frame.row(0, named=True),
        "cell_id": "m/ddp/1gpu/full-fp32-bs8-seq128-ac-full",
        "activation_checkpointing": "full",
        "hfu_measured": 0.16,
    }
    text = tables.render(pl.concat([frame, pl.DataFrame([checkpointed])], how="diagonal_relaxed"))
    section_m, section_n = text.split("#### n")
    assert "| batch/GPU | act. ckpt | global batch |" in section_m and "| MFU | HFU | status |" in section_m
    assert "| 8 | full | 8 |" in section_m and "| 12.3% | 16.0% | ok |" in section_m
    assert "act. ckpt" not in section_n  # model n runs none: its table is as it was


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


def test_every_model_table_has_its_provenance_and_charts_under_it():
    text = tables.render(summary(), charts_rel="docs/r/charts")
    section_m = text.split("#### m\n", 1)[1].split("#### n\n", 1)[0]
    assert "Run `r` on 2026-11-22, commit `0123456789ab`, Xeon (cpu), torch 2.13.0" in section_m
    assert "[![Training throughput](docs/r/charts/m/throughput.png)](docs/r/charts/m/throughput.html)" in section_m
    assert "Not in the charts: m/ddp/2gpu/full-fp32-bs8-seq128 (pending)." in section_m
    assert text.count("Run `r` on") == 2


def test_declared_pivot_puts_gpu_counts_in_columns():
    frame = pl.concat(
        [summary(), pl.DataFrame([{**summary().row(0, named=True), "gpus": 2, "train_tokens_per_s": 20000.0}])],
        how="diagonal_relaxed",
    )
    pivot = {"title": "tok/s by GPUs", "rows": ["model", "strategy"], "columns": "gpus", "value": "train_tokens_per_s"}
    text = tables.pivot_table(frame, pivot)
    assert "| model | strategy | gpus 1 | gpus 2 |" in text
    assert "| m | ddp | 12,346 | 20,000 |" in text
    assert "| n | ddp | 12,346 | — |" in text
    assert "no ok cells" in tables.pivot_table(frame, {**pivot, "filter": {"precision": ["bf16"]}})


def test_a_pivot_naming_an_unknown_column_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"report.pivots\[0\].value: 'tokens' is not a summary column; use one of"):
        matrix.check_pivots([{"title": "t", "rows": ["model"], "columns": "gpus", "value": "tokens"}])


@pytest.mark.parametrize("config_file", ["config.yaml", "configs/cpu-strategies.yaml"])
def test_readme_tables_equal_the_rendering_of_the_committed_summary(repo, config_file):
    """Hand-edited or stale README tables fail: the block between a run's markers must be, byte for byte,
    what its committed docs/<run>/summary.csv renders to with the run's config."""
    from ftbench.plan.config_check import validate

    config = validate(yaml.safe_load((repo / config_file).read_text()), repo)
    run, report = config["run_name"], config["report"]
    docs_dir = repo / report["docs_dir"] / run
    block = tables.render_docs(docs_dir / "summary.csv", repo / report["readme"], docs_dir / "charts", report["pivots"])
    begin, end = tables.markers(run)
    readme = (repo / report["readme"]).read_text()
    assert readme.split(begin + "\n", 1)[1].split(end, 1)[0] == block
    images = re.findall(r"\]\(([^)]+\.(?:png|html))\)", block)
    assert images
    for image in images:  # every chart the page shows is committed (paths are relative to the page)
        assert ((repo / report["readme"]).parent / image).is_file(), image
