import numpy as np
import pytest

from ftbench import sources, tokcache
from ftbench.files import read_json


def test_pack_joins_documents_with_eos_and_never_pads():
    blocks, dropped = tokcache._pack([[1, 2, 3], [4], [5, 6]], eos_id=0, seq_len=4, dtype=np.uint16)
    assert blocks.tolist() == [[1, 2, 3, 0], [4, 0, 5, 6]]
    assert dropped == 1  # the final EOS: less than one block
    long_doc, _ = tokcache._pack([list(range(1, 10))], eos_id=0, seq_len=4, dtype=np.uint16)
    assert long_doc.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]  # longer than seq_len: split, not dropped


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    sources.prepare_dataset("builtin:customer_support", root / "data", num_rows=300, seed=0)
    sources.train_tokenizer("builtin:bpe-400", root / "data", "{instruction}\n{response}", root / "tok")
    tokcache.build(root / "data", root / "tok", root / "c", "{instruction}\n{response}", 32, 0.2, seed=0)
    return root


def test_cache_manifest_describes_what_is_on_disk(cache):
    manifest = read_json(cache / "c" / "manifest.json")
    assert manifest["dtype"] == "uint16" and manifest["seq_len"] == 32
    assert manifest["tokenizer_fingerprint"] == tokcache.tokenizer_fingerprint(cache / "tok")
    assert set(manifest["files"]) == {"train.npy", "eval.npy"}
    for split in tokcache.SPLITS:
        blocks = tokcache.open_split(cache / "c", split)
        assert blocks.shape == (manifest["splits"][split]["blocks"], 32)
        assert manifest["tokens"][split] == blocks.size
    assert manifest["splits"]["eval"]["documents"] == 60


def test_cache_tokens_decode_back_to_the_rendered_documents(cache):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cache / "tok")
    docs = sources.render_documents(sources.load_rows(cache / "data"), "{instruction}\n{response}")
    text = tok.decode(tokcache.open_split(cache / "c", "train").reshape(-1).tolist())
    first = text.split(sources.EOS)[0]
    assert first in docs


def test_a_cache_that_disagrees_with_its_manifest_is_refused(cache, tmp_path):
    import shutil

    shutil.copytree(cache / "c", tmp_path / "c")
    np.save(tmp_path / "c" / "eval.npy", np.zeros((1, 32), dtype=np.uint16))
    with pytest.raises(ValueError, match="manifest says"):
        tokcache.open_split(tmp_path / "c", "eval")


def test_too_little_data_for_a_split_names_the_cache(cache, tmp_path):
    with pytest.raises(ValueError, match="fewer than seq_len=100000 tokens"):
        tokcache.build(cache / "data", cache / "tok", tmp_path / "x", "{instruction}", 100000, 0.2, seed=0)
