"""On a laptop, before any download and without a hub token: the preview estimates a 70B FSDP + LoRA cell
on 8 x 80 GB GPUs from a shipped config.json (models[].shape), and prunes what is predicted not to fit."""

import time

import pytest
import yaml

pytestmark = pytest.mark.e2e


def test_a_70b_cell_is_estimated_in_seconds_without_a_download(raw_test_config, repo, tmp_path, run_snakemake):
    config = raw_test_config
    config["models"] = [
        {
            "name": "llama2-70b",
            "source": "hf:meta-llama/Llama-2-70b-hf",
            "shape": f"local:{repo / 'configs' / 'shapes' / 'llama-2-70b.json'}",
        }
    ]
    config["matrix"] = {
        "strategies": ["ddp", "fsdp"],
        "gpus": [8],
        "seq_len": [4096],
        "method": ["lora"],
        "precision": ["bf16"],
        "activation_checkpointing": ["none", "full"],
    }
    config["batch_size_per_gpu"] = 1
    config.pop("global_batch_size", None)
    config["hardware"] = {"device": "cuda", "gpus_per_node": 8, "gpu_memory_gb": 80}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    t0 = time.perf_counter()
    out = run_snakemake(tmp_path, "--cores", "1", "preview").stdout
    seconds = time.perf_counter() - t0
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in out.splitlines() if "/8gpu/" in line}
    fits = rows["llama2-70b/fsdp/8gpu/lora-bf16-bs1-seq4096-ac-full"][4]
    assert float(fits) < 80, out
    assert rows["llama2-70b/ddp/8gpu/lora-bf16-bs1-seq4096-ac-full"][4].endswith("(over 80)"), out
    assert rows["llama2-70b/fsdp/8gpu/lora-bf16-bs1-seq4096"][4].endswith("(over 80)"), out
    assert not (tmp_path / "resources" / "models").exists()  # nothing downloaded, nothing built
    assert seconds < 120, seconds  # snakemake's own start-up is most of it

    config["limits"] = {"prune_predicted_oom": True}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = run_snakemake(tmp_path, "--cores", "1", "preview").stdout
    assert "1 of 1 selected cells to run (3 pruned)" in out, out
