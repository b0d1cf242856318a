import numpy as np
import pytest

from ftbench.data import sources, tokcache
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


TRICKY = [" ", "  ", "\n", "\n\n", "\r\n", "\t", "\u00a0", "\u2028", "\u3000", "\x85", "\x1c", "\u180e", "\u200b"]
PIECES = ["a", "Zz", "é", "日本", "42", "#7", "'s", "'ll", "!", "?!", "_", "ß", "²", "<|", "|>", "x\n", ":\n"]


def fuzz_documents(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    alphabet = TRICKY + PIECES
    return ["".join(rng.choice(alphabet, size=rng.integers(1, 40))) for _ in range(n)]


def test_segments_encode_as_the_whole_document(cache):
    """The cut `_SEGMENT` makes is a cut of the GPT-2 split regex: encoding the segments one by one gives the
    document's encoding, whitespace of every kind around the newline included."""
    from transformers import AutoTokenizer

    backend = AutoTokenizer.from_pretrained(cache / "tok").backend_tokenizer
    docs = fuzz_documents(3000, seed=0) + sources.render_documents(sources.load_rows(cache / "data"), "{instruction}")
    assert tokcache._segmentable(backend, docs)
    pre = backend.pre_tokenizer.pre_tokenize_str
    cut = 0
    for doc in docs:
        segments = tokcache._SEGMENT.findall(doc)
        assert "".join(segments) == doc and all(segments)
        # the words the regex splits (a small vocabulary may hide a wrong cut in the ids)
        assert [w for s in segments for w, _ in pre(s)] == [w for w, _ in pre(doc)], (doc, segments)
        whole = backend.encode(doc, add_special_tokens=False).ids
        assert [i for s in segments for i in backend.encode(s, add_special_tokens=False).ids] == whole
        cut += len(segments) > 1
    assert cut > 1000  # the fuzz does cut (cutting before every newline fails this test on ~40% of them)


def test_segmented_and_plain_encoding_give_the_same_streams(cache):
    from transformers import AutoTokenizer

    backend = AutoTokenizer.from_pretrained(cache / "tok").backend_tokenizer
    docs = fuzz_documents(500, seed=1)
    split_docs = {"eval": docs[:50], "train": docs[50:] + docs[:20]}  # repeated documents and segments
    streams = tokcache._encode_segmented(backend, split_docs, eos_id=0, dtype=np.uint16)
    for split, split_list in split_docs.items():
        ids = [e.ids for e in backend.encode_batch(split_list, add_special_tokens=False)]
        assert streams[split].tolist() == tokcache._stream(ids, 0, np.uint16).tolist()


def test_text_holding_an_added_token_is_encoded_whole(cache):
    from transformers import AutoTokenizer

    backend = AutoTokenizer.from_pretrained(cache / "tok").backend_tokenizer
    docs = ["hi\nthere", f"a\n{sources.EOS}\nb"]
    assert not tokcache._segmentable(backend, docs)
    streams = tokcache._encode(backend, {"eval": docs[:1], "train": docs}, eos_id=0, dtype=np.uint16)
    assert streams["train"].tolist().count(0) == 3  # the EOS in the text, one after each document


def test_json_lines_and_rendering_match_the_plain_python_path(tmp_path):
    import json

    lines = ['{"a": "x", "b": null}', '  {"a": "y", "b": 1}  ', "", '{"a": "\\u00e9", "b": [1, 2]}', "\ufeff{}"]
    with pytest.raises(json.JSONDecodeError, match="BOM"):
        sources._json_lines("\n".join(lines))
    text = "\n".join(lines[:-1]) + "\r\n"
    assert sources._json_lines(text) == [json.loads(line) for line in text.splitlines() if line.strip()]
    with pytest.raises(json.JSONDecodeError, match="Extra data"):
        sources._json_lines('{"a": 1} {"a": 2}')
    rows = sources._json_lines(text)
    assert sources.render_documents(rows, "{a}|{b}") == ["x|", "y|1", "é|[1, 2]"]
    with pytest.raises(sources.ConfigError, match="row 1 has no column 'c'"):
        sources.render_documents([{"a": 1, "c": 2}, {"a": 3}], "{a}{c}")
