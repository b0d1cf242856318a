"""local: sources, one test per dataset format, plus model directories and the errors that name the column."""

import json
import os

import polars as pl
import pytest

from ftbench.data import download, sources, tokcache
from ftbench.errors import ConfigError
from ftbench.files import read_json, sha256_file
from ftbench.plan.config import tokenizer_id

ROWS = [
    {"instruction": "cancel order 1, please", "response": 'Open "Orders",\nthen Cancel.', "intent": "cancel"},
    {"instruction": "track order 2", "response": "See Track Order.", "intent": "track"},
    {"instruction": "refund order 3", "response": "Use Returns.", "intent": "refund"},
]
TEMPLATE = "Q: {instruction}\nA: {response}"


def prepared(path, tmp_path, **options):
    manifest = download.download_dataset(f"local:{path}", tmp_path / "out", **options)
    return manifest, sources.load_rows(tmp_path / "out")


def assert_linked(manifest, out, source_files):
    for name, source_file in source_files.items():
        assert (out / name).is_symlink() and os.path.realpath(out / name) == os.path.realpath(source_file)
        assert manifest["files"][name] == sha256_file(source_file)


def test_csv_file_keeps_quoted_commas_and_newlines(tmp_path):
    path = tmp_path / "support.csv"
    pl.DataFrame(ROWS).write_csv(path)
    manifest, rows = prepared(path, tmp_path)
    assert rows == ROWS and manifest["data_files"] == ["support.csv"]
    assert_linked(manifest, tmp_path / "out", {"support.csv": path})
    assert sources.render_documents(rows, TEMPLATE)[0] == 'Q: cancel order 1, please\nA: Open "Orders",\nthen Cancel.'


def test_jsonl_file(tmp_path):
    path = tmp_path / "support.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    manifest, rows = prepared(path, tmp_path)
    assert rows == ROWS and manifest["path"] == str(path.resolve()) and "revision" not in manifest
    assert_linked(manifest, tmp_path / "out", {"support.jsonl": path})


def test_json_array_file(tmp_path):
    path = tmp_path / "support.json"
    path.write_text(json.dumps(ROWS))
    assert prepared(path, tmp_path)[1] == ROWS


def test_parquet_file(tmp_path):
    path = tmp_path / "support.parquet"
    pl.DataFrame(ROWS).write_parquet(path)
    manifest, rows = prepared(path, tmp_path)
    assert rows == ROWS
    assert_linked(manifest, tmp_path / "out", {"support.parquet": path})


@pytest.mark.parametrize(
    ("sample_by", "expected"),
    [
        ("paragraph", ["= Title =", "First line.\nSecond line.", "Last paragraph."]),
        ("line", ["= Title =", "First line.", "Second line.", "Last paragraph."]),
        ("document", ["= Title =\n\nFirst line.\nSecond line.\n\n  \nLast paragraph."]),
    ],
)
def test_txt_file_becomes_a_text_column(tmp_path, sample_by, expected):
    path = tmp_path / "wiki.txt"
    path.write_text("= Title =\n\nFirst line.\nSecond line.\n\n  \nLast paragraph.\n")
    manifest, rows = prepared(path, tmp_path, sample_by=sample_by)
    assert manifest["sample_by"] == sample_by
    assert [r["text"] for r in rows] == expected
    assert sources.render_documents(rows, sources.Render(format="text")) == expected
    assert sources.render_documents(rows, "{text}") == expected  # the columns format reads it too


def test_directory_of_shards_in_order_and_by_split(tmp_path):
    shards = tmp_path / "shards"
    (shards / "data").mkdir(parents=True)
    for name, part in {
        "train-00000-of-00002": ROWS[:2],
        "train-00001-of-00002": ROWS[2:],
        "test-00000-of-00001": ROWS,
    }.items():
        pl.DataFrame(part).write_parquet(shards / "data" / f"{name}.parquet")
    (shards / "README.md").write_text("# not data\n")
    (shards / ".cache").mkdir()
    (shards / ".cache" / "x.jsonl").write_text("{}\n")  # hidden folders are skipped
    manifest, rows = prepared(shards, tmp_path)
    assert manifest["data_files"] == [
        "data/test-00000-of-00001.parquet",
        "data/train-00000-of-00002.parquet",
        "data/train-00001-of-00002.parquet",
    ]
    assert len(rows) == 6
    manifest, rows = prepared(shards, tmp_path, split="train")
    assert rows == ROWS and len(manifest["data_files"]) == 2
    assert_linked(manifest, tmp_path / "out", {n: shards / n for n in manifest["data_files"]})
    manifest, rows = prepared(shards, tmp_path, files=["data/test-*"])
    assert rows == ROWS and manifest["data_files"] == ["data/test-00000-of-00001.parquet"]


MESSAGES = [
    {"id": 1, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    {"id": 2, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "bye"}]},
]


def test_messages_shape_renders_each_message(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in MESSAGES))
    _, rows = prepared(path, tmp_path)
    render = sources.Render(format="messages", message_template="[{role}] {content}\n")
    assert sources.render_documents(rows, render) == [
        "[user] hi\n[assistant] hello\n",
        "[system] be brief\n[user] bye\n",
    ]
    assert (
        sources.render_documents(rows, sources.Render(format="messages"))[0] == "<|user|>\nhi\n<|assistant|>\nhello\n"
    )


def test_messages_errors_name_the_column_and_the_field():
    with pytest.raises(ConfigError, match=r"dataset.messages_column: column \['conversations'\] not in the dataset"):
        sources.render_documents(MESSAGES, sources.Render(format="messages", messages_column="conversations"))
    with pytest.raises(ConfigError, match=r"dataset.message_template: row 0 message 0 has no column 'name'"):
        sources.render_documents(MESSAGES, sources.Render(format="messages", message_template="{name}: {content}"))
    with pytest.raises(ConfigError, match=r"dataset.messages_column: row 0 column 'id' is int"):
        sources.render_documents(MESSAGES, sources.Render(format="messages", messages_column="id"))


def test_missing_columns_are_config_errors_naming_them(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset.template: column\(s\) \['question'\] not in the dataset"):
        sources.render_documents(ROWS, "{question}")
    with pytest.raises(ConfigError, match=r"dataset.format: text needs a 'text' column"):
        sources.render_documents(ROWS, sources.Render(format="text"))
    with pytest.raises(ConfigError, match=r"dataset.template: row 1 has no column 'extra'"):
        sources.render_documents([{"extra": "a"}, {"other": "b"}], "{extra}")


def test_missing_path_and_wrong_file_type_are_named(tmp_path):
    with pytest.raises(download.SourceError, match=r"dataset.source: local:.*nowhere.csv does not exist"):
        download.download_dataset(f"local:{tmp_path / 'nowhere.csv'}", tmp_path / "out")
    (tmp_path / "notes.md").write_text("# x\n")
    with pytest.raises(download.SourceError, match=r"notes.md is not a parquet/jsonl/json/csv/txt file"):
        download.download_dataset(f"local:{tmp_path / 'notes.md'}", tmp_path / "out")


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A model directory in Hugging Face format (a config model saved by ftbench itself)."""
    root = tmp_path_factory.mktemp("local-model")
    sources.prepare_dataset("builtin:customer_support", root / "data", num_rows=200, seed=0)
    sources.train_tokenizer("builtin:bpe-300", root / "data", sources.DEFAULT_TEMPLATE, root / "tok")
    arch = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32, "max_positions": 64}
    sources.prepare_model(
        {"name": "x", "source": "config:llama", "architecture": arch}, root / "tok", root / "model", 0
    )
    (root / "model" / "manifest.json").unlink()
    return root / "model"


def test_local_model_directory_is_linked_with_its_tokenizer(hf_dir, tmp_path):
    source = f"local:{hf_dir}"
    tok = download.download_tokenizer(source, tmp_path / "tok")
    manifest = download.download_model({"name": "x", "source": source}, tmp_path / "tok", tmp_path / "model")
    assert manifest["path"] == tok["path"] == str(hf_dir.resolve()) and manifest["max_positions"] == 64
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert manifest["files"][name] == sha256_file(hf_dir / name)
        assert (tmp_path / "model" / name).is_symlink()
    assert tokcache.tokenizer_fingerprint(tmp_path / "model") == tokcache.tokenizer_fingerprint(hf_dir)
    assert read_json(tmp_path / "tok" / "manifest.json")["vocab_size"] == 300
    tid = tokenizer_id({"dataset": {"name": "d"}}, {"name": "x", "source": source})
    assert tid.startswith("local--model-") and tid == tokenizer_id(
        {}, {"name": "y", "source": "x", "tokenizer": source}
    )


def test_local_model_without_safetensors_or_tokenizer_json_is_refused(hf_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer_config.json"):
        (broken / name).symlink_to(hf_dir / name)
    with pytest.raises(download.SourceError, match=r"has no tokenizer.json"):
        download.download_tokenizer(f"local:{broken}", tmp_path / "tok")
    download.download_tokenizer(f"local:{hf_dir}", tmp_path / "tok")
    with pytest.raises(download.SourceError, match=r"models\[b\]\.source: .* has no \*\.safetensors weights"):
        download.download_model({"name": "b", "source": f"local:{broken}"}, tmp_path / "tok", tmp_path / "m")
