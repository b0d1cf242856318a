import shutil

import pytest

from ftbench.data import sources, tokcache
from ftbench.train import job


@pytest.fixture(scope="module")
def two_tokenizers(tmp_path_factory):
    root = tmp_path_factory.mktemp("tc")
    sources.prepare_dataset("builtin:customer_support", root / "data", num_rows=200, seed=0)
    for vocab in (400, 500):
        sources.train_tokenizer(f"builtin:bpe-{vocab}", root / "data", "{instruction}", root / f"tok{vocab}")
    arch = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32, "max_positions": 64}
    sources.prepare_model(
        {"name": "m", "source": "config:llama", "architecture": arch}, root / "tok400", root / "model", seed=0
    )
    for vocab in (400, 500):
        tokcache.build(root / "data", root / f"tok{vocab}", root / f"c{vocab}", "{instruction}", 16, 0.2, seed=0)
    return root


def test_cache_from_the_models_tokenizer_is_accepted(two_tokenizers):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(two_tokenizers / "model")
    manifest = job.check_cache_matches_model(two_tokenizers / "c400", two_tokenizers / "model", model)
    assert manifest["vocab_size"] == 400


def test_cache_from_another_tokenizer_is_refused(two_tokenizers, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(two_tokenizers / "model")
    with pytest.raises(ValueError, match="was built with tokenizer"):
        job.check_cache_matches_model(two_tokenizers / "c500", two_tokenizers / "model", model)
    shutil.copytree(two_tokenizers / "model", tmp_path / "m")
    shutil.copy(two_tokenizers / "tok500" / "tokenizer.json", tmp_path / "m" / "tokenizer.json")
    with pytest.raises(ValueError, match="exceeds the model's embedding table"):
        job.check_cache_matches_model(two_tokenizers / "c500", tmp_path / "m", model)
