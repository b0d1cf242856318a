import json

import pytest

from ftbench.data import sources
from ftbench.data.builtin_data import customer_support_rows
from ftbench.errors import ConfigError
from ftbench.files import read_json, sha256_file


def test_builtin_rows_are_deterministic_and_bitext_shaped():
    rows = customer_support_rows(50, seed=3)
    assert rows == customer_support_rows(50, seed=3)
    assert rows != customer_support_rows(50, seed=4)
    assert set(rows[0]) == {"flags", "instruction", "category", "intent", "response"}
    assert len({r["intent"] for r in rows}) > 5


def test_prepare_dataset_writes_rows_and_a_manifest_with_hashes(tmp_path):
    manifest = sources.prepare_dataset("builtin:customer_support", tmp_path, num_rows=20, seed=0)
    assert manifest["rows"] == 20 and manifest["source"] == "builtin:customer_support"
    assert manifest["files"] == {"data.jsonl": sha256_file(tmp_path / "data.jsonl")}
    assert read_json(tmp_path / "manifest.json") == json.loads(json.dumps(manifest))
    assert len(sources.load_rows(tmp_path)) == 20


def test_template_missing_column_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match=r"\['answer'\] not in the dataset"):
        sources.render_documents([{"instruction": "a", "response": "b"}], "{instruction} {answer}")
    assert sources.render_documents([{"q": "a", "r": "b"}], "Q: {q}\nA: {r}") == ["Q: a\nA: b"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    sources.prepare_dataset("builtin:customer_support", root / "data", num_rows=200, seed=0)
    sources.train_tokenizer("builtin:bpe-400", root / "data", "{instruction}\n{response}", root / "tok")
    arch = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 64}
    model = {"name": "m", "source": "config:llama", "architecture": arch}
    sources.prepare_model(model, root / "tok", root / "model", seed=1)
    return root


def test_tokenizer_has_the_requested_vocabulary_and_eos(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model / "tok")
    assert len(tok) == 400
    assert tok.eos_token == sources.EOS
    text = "I want to cancel order #12345"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level BPE round-trips


def test_config_model_is_seeded_and_sized_from_the_architecture(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    net = AutoModelForCausalLM.from_pretrained(tiny_model / "model")
    assert net.config.num_hidden_layers == 2 and net.config.vocab_size == 400
    manifest = read_json(tiny_model / "model" / "manifest.json")
    assert manifest["parameters"] == sum(p.numel() for p in net.parameters())
    assert "model.safetensors" in manifest["files"] and "tokenizer.json" in manifest["files"]
    # same seed -> byte-identical weights, so every cell of a model starts from the same point
    arch = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 64}
    sources.prepare_model(
        {"name": "m", "source": "config:llama", "architecture": arch}, tiny_model / "tok", tmp_path, seed=1
    )
    assert sha256_file(tmp_path / "model.safetensors") == manifest["files"]["model.safetensors"]


def test_gpt2_family_builds_too(tiny_model, tmp_path):
    arch = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 128, "max_positions": 64}
    manifest = sources.prepare_model(
        {"name": "g", "source": "config:gpt2", "architecture": arch}, tiny_model / "tok", tmp_path, seed=0
    )
    assert read_json(tmp_path / "config.json")["model_type"] == "gpt2"
    assert manifest["parameters"] > 0
