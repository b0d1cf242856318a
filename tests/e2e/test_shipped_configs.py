"""The shipped configs that reproduce the field's tables plan and preview on a laptop: no hub token, no
download, every model's shape (and so its memory estimate) from configs/shapes/."""

import shutil

import pytest
import yaml

pytestmark = pytest.mark.e2e

SHIPPED = {
    # config: (cells, a cell with its expected estimate column)
    "bench-pie-llama2": (72, "llama2-13b/fsdp/8gpu/full-bf16-bs1-seq1024"),
    "llama2-70b-lora": (7, "llama2-70b/fsdp/8gpu/lora-bf16-bs1-seq4096-ac-full"),
    "gpt2-wikitext2": (2, "gpt2/ddp/1gpu/full-fp16-bs8-seq1024"),
}


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_config_plans_and_previews_without_downloads(name, repo, tmp_path, run_snakemake, monkeypatch):
    # what a clone holds: shape: paths and the page the tables go to are relative to the workflow directory
    shutil.copytree(repo / "configs", tmp_path / "configs")
    (tmp_path / "docs").mkdir()
    shutil.copy(repo / "docs" / "reproductions.md", tmp_path / "docs")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    configfile = tmp_path / "configs" / f"{name}.yaml"
    config = yaml.safe_load(configfile.read_text())
    cells, probe = SHIPPED[name]
    dry = run_snakemake(tmp_path, "-n", configfile=configfile).stdout
    assert dry.count("rule train_cell:") == cells, dry[-3000:]  # one training job per cell, none run
    out = run_snakemake(tmp_path, "--cores", "1", "preview", configfile=configfile).stdout
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in out.splitlines() if line.startswith("| ")}
    assert f"{cells} of {cells} selected cells to run" in out, out
    estimate = rows[probe][4]
    assert "unknown" not in estimate and float(estimate.split()[0]) < config["hardware"].get("gpu_memory_gb", 80)
    assert not any("unknown until downloaded" in row[4] for row in rows.values() if len(row) > 4)
    assert not (tmp_path / "resources" / "models").exists()  # nothing downloaded, nothing built
