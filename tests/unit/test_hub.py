"""hf: sources through the unmodified huggingface_hub client against a real hub server (olah) on 127.0.0.1."""

import json
import os
import subprocess
import sys

import pytest

from ftbench.data import download, sources, tokcache
from ftbench.files import read_json, sha256_file
from ftbench.plan.config import tokenizer_id

MODEL = "hf:acme/tiny-llama"
EXPECTED_MODEL_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
}


def fetch_model(tmp_path, source):
    tok = download.download_tokenizer(source, tmp_path / "tok")
    model = download.download_model({"name": "m", "source": source}, tmp_path / "tok", tmp_path / "model")
    return tok, model


def test_model_download_is_byte_identical_and_records_the_resolved_commit(hub, tmp_path):
    tok, manifest = fetch_model(tmp_path, MODEL)
    repo = hub.repo("model", "acme/tiny-llama")
    assert manifest["revision"] == tok["revision"] == hub.commits["acme/tiny-llama"]["main"]
    assert manifest["requested_revision"] == "main" and manifest["endpoint"] == hub.endpoint
    on_disk = {p.name for p in (tmp_path / "model").iterdir()} - {"manifest.json"}
    assert on_disk >= EXPECTED_MODEL_FILES  # no README, no .bin, no sub-folder
    assert not on_disk & {"README.md", "pytorch_model.bin", "onnx"}
    for name in on_disk:
        path = tmp_path / "model" / name
        assert path.is_symlink(), name  # a link into the hub cache under HF_HOME: nothing copied
        assert os.path.realpath(path).startswith(os.path.realpath(os.environ["HF_HOME"]))
        assert path.read_bytes() == (repo / name).read_bytes(), name
        assert manifest["files"][name] == sha256_file(repo / name)
    assert manifest["max_positions"] == 128 and manifest["tokenizer"] == MODEL
    assert tok["vocab_size"] == 320 and set(tok["files"]) <= set(sources.TOKENIZER_FILES)
    assert tokcache.tokenizer_fingerprint(tmp_path / "tok") == tokcache.tokenizer_fingerprint(tmp_path / "model")


def test_downloaded_model_loads_with_transformers(hub, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    fetch_model(tmp_path, MODEL)
    net = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert net.config.num_hidden_layers == 2 and net.config.ftbench_note == "second commit"
    assert len(AutoTokenizer.from_pretrained(tmp_path / "model")) == net.config.vocab_size


@pytest.mark.parametrize("pin", ["v1", "sha"])
def test_revision_pin_downloads_that_commit(hub, tmp_path, pin):
    v1 = hub.commits["acme/tiny-llama"]["v1"]
    revision = v1 if pin == "sha" else pin
    _, manifest = fetch_model(tmp_path, f"{MODEL}@{revision}")
    assert manifest["revision"] == v1 and manifest["requested_revision"] == revision
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert "ftbench_note" not in config  # the first commit's config.json
    model = {"name": "m", "source": f"{MODEL}@{revision}"}
    assert tokenizer_id({"dataset": {"name": "d"}}, model) == f"hf--acme--tiny-llama--{revision}"


def test_parquet_shards_of_one_split_load_without_the_datasets_library(hub, tmp_path):
    manifest = download.download_dataset("hf:acme/tiny-chat", tmp_path / "d", split="train")
    repo = hub.repo("dataset", "acme/tiny-chat")
    assert manifest["revision"] == hub.commits["acme/tiny-chat"]["main"]
    assert manifest["data_files"] == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
    for name in manifest["data_files"]:
        assert (tmp_path / "d" / name).read_bytes() == (repo / name).read_bytes()
    rows = sources.load_rows(tmp_path / "d")
    assert len(rows) == 80 and rows[0]["messages"][0] == {
        "role": "user",
        "content": "How do I cancel order 12? (ticket 0)",
    }
    docs = sources.render_documents(rows, sources.Render(format="messages"))
    assert docs[0] == (
        "<|user|>\nHow do I cancel order 12? (ticket 0)\n<|assistant|>\nOpen Order History and choose Cancel.\n"
    )


def test_dataset_files_pick_what_is_downloaded(hub, tmp_path):
    every = download.download_dataset("hf:acme/tiny-chat", tmp_path / "all")
    assert len(every["data_files"]) == 3 and len(sources.load_rows(tmp_path / "all")) == 90
    test = download.download_dataset("hf:acme/tiny-chat", tmp_path / "test", files=["data/test-*.parquet"])
    assert test["data_files"] == ["data/test-00000-of-00001.parquet"] and test["patterns"] == ["data/test-*.parquet"]
    with pytest.raises(download.SourceError, match=r"no data file .* matching \['valid"):
        download.download_dataset("hf:acme/tiny-chat", tmp_path / "none", files=["valid*.parquet"])


def test_a_repository_that_needs_a_token_says_how_to_give_one(hub, tmp_path):
    with pytest.raises(
        download.SourceError, match=r"models\[m\]\.source: hf:acme/private-llama .*HF_TOKEN or run `hf auth login`"
    ):
        download.download_model({"name": "m", "source": "hf:acme/private-llama"}, tmp_path / "tok", tmp_path / "m")


OFFLINE = """
import sys
from ftbench.data import download
try:
    print(download.download_dataset(sys.argv[1], sys.argv[2], split="train")["revision"])
except download.SourceError as e:
    print(e)
"""


def test_hf_hub_offline_serves_the_cache_and_names_what_is_missing(hub, tmp_path):
    online = download.download_dataset("hf:acme/tiny-chat", tmp_path / "online", split="train")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens on 9

    def offline(source, out):
        cmd = [sys.executable, "-c", OFFLINE, source, str(tmp_path / out)]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.strip()

    assert offline("hf:acme/tiny-chat", "offline") == online["revision"]
    assert read_json(tmp_path / "offline" / "manifest.json")["files"] == online["files"]
    assert "is not in the hub cache" in offline("hf:acme/never-downloaded", "missing")
    assert "HF_HUB_OFFLINE=1" in offline("hf:acme/never-downloaded", "missing")
