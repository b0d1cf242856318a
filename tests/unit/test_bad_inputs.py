"""Bad input gets a clear error, and nothing computed is lost.

Every case runs beside a work directory holding computed results (results/ and a README with tables): the
error must name what is wrong and the sha256 of every file of results/ and of README.md must be the same
after it as before."""

import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import record

from ftbench import files
from ftbench.cell import Cell
from ftbench.data import download, sources, tokcache
from ftbench.errors import ConfigError
from ftbench.report import aggregate, tables
from ftbench.report.paths import ReportPaths
from ftbench.train import job

TEMPLATE = "{instruction}\n{response}"
RUN = "r"
CELLS = ["m/ddp/1gpu/full-fp32-bs2-seq16", "m/ddp/2gpu/full-fp32-bs2-seq16"]
SRC = Path(__file__).resolve().parents[2] / "src" / "ftbench"


def metrics_record(cell_id: str) -> dict:
    model, strategy, gpus, _ = cell_id.split("/")
    return {
        "status": "ok",
        "cell_id": cell_id,
        "run_name": RUN,
        "model": model,
        "strategy": strategy,
        "gpus": int(gpus[:-3]),
        "method": "full",
        "precision": "fp32",
        "batch_size_per_gpu": 2,
        "seq_len": 16,
        "train_tokens_per_s": 100.0,
        "provenance": {"host": "h", "versions": {"torch": "2"}},
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A builtin dataset, its tokenizer, a model and a token cache, built once."""
    root = tmp_path_factory.mktemp("bad")
    sources.prepare_dataset("builtin:customer_support", root / "data", num_rows=200, seed=0)
    sources.train_tokenizer("builtin:bpe-400", root / "data", TEMPLATE, root / "tok")
    arch = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32, "max_positions": 64}
    model = {"name": "m", "source": "config:llama", "architecture": arch}
    sources.prepare_model(model, root / "tok", root / "model", seed=0)
    tokcache.build(root / "data", root / "tok", root / "cache", TEMPLATE, 16, 0.2, seed=0)
    return root


@pytest.fixture
def work(tmp_path):
    """A work directory with computed results: two cells' metrics.json, a summary and README tables."""
    runs = tmp_path / "results" / RUN / "runs"
    for cell_id in CELLS:
        (runs / cell_id).mkdir(parents=True)
        files.atomic_write_json(runs / cell_id / "metrics.json", metrics_record(cell_id))
    begin, end = tables.markers(RUN)
    (tmp_path / "README.md").write_text(f"# notes\n\nby hand\n\n{begin}\nold table\n{end}\n\nmore\n")
    frame = aggregate.collect([record(c) for c in CELLS], metrics_files(tmp_path))
    aggregate.write(frame, tmp_path / "results" / RUN / "summary.parquet", tmp_path / "results" / RUN / "summary.csv")
    return tmp_path


def metrics_files(work: Path) -> list[Path]:
    return [work / "results" / RUN / "runs" / c / "metrics.json" for c in CELLS]


@pytest.fixture
def unchanged(work, checksums):
    """Asserts, after the test, that results/ and README.md are byte for byte what they were."""
    before = checksums(work)
    yield work
    assert checksums(work) == before


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def dataset(tmp_path: Path, name: str, data: bytes) -> Path:
    """A local dataset of one file, linked and manifested as the download rule does."""
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    download.download_dataset(f"local:{path}", tmp_path / "ds")
    return tmp_path / "ds"


def build(built: Path, data_dir: Path, out: Path, template=TEMPLATE, seq_len=16):
    return tokcache.build(data_dir, built / "tok", out, template, seq_len, 0.2, seed=0)


# --- Datasets ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.csv", "rows.txt", "rows.json", "rows.parquet"])
def test_an_empty_file_is_an_error_naming_it(built, tmp_path, unchanged, name):
    data_dir = dataset(tmp_path, name, b"")
    with pytest.raises(ConfigError, match=rf"dataset file .*{re.escape(name)} is empty \(0 bytes\)"):
        build(built, data_dir, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_whitespace_only_file_is_an_error_naming_it(built, tmp_path, unchanged):
    data_dir = dataset(tmp_path, "rows.jsonl", b"\n  \n")
    with pytest.raises(ConfigError, match=r"rows.jsonl holds only whitespace"):
        build(built, data_dir, tmp_path / "cache")


def test_rows_missing_the_templates_fields_are_named(built, tmp_path, unchanged):
    rows = [{"instruction": f"q{i}", "answer": "a"} for i in range(50)]
    data_dir = dataset(tmp_path, "rows.jsonl", jsonl(rows))
    with pytest.raises(ConfigError, match=r"dataset.template: column\(s\) \['response'\] not in the dataset"):
        build(built, data_dir, tmp_path / "cache")
    rows = [{"instruction": "q", "response": "a"}, {"instruction": "q2"}]
    data_dir = dataset(tmp_path / "second", "rows.jsonl", jsonl(rows))
    with pytest.raises(ConfigError, match=r"row 1 has no column 'response'"):
        build(built, data_dir, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_json_that_is_not_records_is_named_with_its_line(built, tmp_path, unchanged):
    data_dir = dataset(tmp_path, "rows.jsonl", b'{"instruction": "q", "response": "a"}\n[1, 2]\n')
    with pytest.raises(ConfigError, match=r"rows.jsonl: record 2 is a JSON list, not an object"):
        build(built, data_dir, tmp_path / "cache")
    data_dir = dataset(tmp_path / "b", "rows.jsonl", b'{"instruction": "q", "response": "a"}\n{"instruction": \n')
    with pytest.raises(ConfigError, match=r"rows.jsonl: invalid JSON at line 2 column"):
        build(built, data_dir, tmp_path / "cache")


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.txt", "rows.csv", "rows.json"])
def test_bytes_that_are_not_utf8_name_the_file_the_offset_and_the_line(built, tmp_path, unchanged, name):
    good = [b'{"instruction": "q1", "response": "a1"}\n', b'{"instruction": "q2", "response": "a2"}\n']
    bad = b'{"instruction": "caf\xe9", "response": "a3"}\n'
    if name == "rows.csv":
        good, bad = [b"instruction,response\n", b"q1,a1\n"], b"caf\xe9,a3\n"
    elif name == "rows.json":
        good, bad = [b"[\n", b'{"instruction": "q1", "response": "a1"},\n'], b'{"instruction": "caf\xe9"}]\n'
    data = b"".join(good) + bad
    offset = len(b"".join(good)) + bad.index(b"\xe9")
    data_dir = dataset(tmp_path, name, data)
    with pytest.raises(ConfigError) as error:
        build(built, data_dir, tmp_path / "cache")
    message = str(error.value)
    assert f"{name}: not UTF-8 at byte offset {offset} (line 3): byte 0xe9" in message, message
    assert "re-encode the file as UTF-8" in message
    assert not (tmp_path / "cache").exists()


def test_a_document_longer_than_seq_len_is_split_across_blocks_never_dropped(built, tmp_path, unchanged):
    from transformers import AutoTokenizer

    long_doc = " ".join(f"order {i} was refunded to card {i * 7}" for i in range(60))  # hundreds of tokens
    rows = [{"text": f"short ticket number {i} about a refund"} for i in range(40)]
    rows.insert(17, {"text": long_doc})
    data_dir = dataset(tmp_path, "rows.jsonl", jsonl(rows))
    manifest = build(built, data_dir, tmp_path / "cache", template=sources.Render(format="text"), seq_len=16)
    ids = AutoTokenizer.from_pretrained(built / "tok")(long_doc, add_special_tokens=False)["input_ids"]
    assert len(ids) > 10 * 16
    streams = {s: tokcache.open_split(tmp_path / "cache", s).reshape(-1).tolist() for s in tokcache.SPLITS}
    found = [s for s, tokens in streams.items() if _contains(tokens, ids)]
    assert found, "the long document's tokens are not all in the cache"
    assert sum(manifest["splits"][s]["documents"] for s in tokcache.SPLITS) == len(rows)


def _contains(haystack: list[int], needle: list[int]) -> bool:
    first = needle[0]
    return any(haystack[i : i + len(needle)] == needle for i, t in enumerate(haystack) if t == first)


def test_fewer_tokens_than_one_global_batch_names_the_cell_before_training(built, unchanged):
    cell = Cell("m", "ddp", 2, "full", "fp32", 2, 16, 100000)
    blocks = files.read_json(built / "cache" / "manifest.json")["splits"]["train"]["blocks"]
    with pytest.raises(ValueError, match=rf"cell {re.escape(cell.id)}: the train split has {blocks} blocks"):
        job.check_inputs(cell, built / "model", built / "cache")
    # the check runs before the process group, model load or any training step
    source = (SRC / "train" / "job.py").read_text()
    run = source[source.index("def run(") :]
    assert run.index("check_inputs(cell, model_dir, cache_dir)") < run.index("dist.init_process_group")


# --- Caches and downloads ---------------------------------------------------------------------------------


def test_manifests_record_every_files_sha256_and_size(built):
    for name in ("cache", "model", "tok", "data"):
        manifest = files.read_json(built / name / "manifest.json")
        assert set(manifest["sizes"]) == set(manifest["files"]) and manifest["files"]
        for rel, size in manifest["sizes"].items():
            assert (built / name / rel).stat().st_size == size
            assert files.sha256_file(built / name / rel) == manifest["files"][rel]


def test_intact_inputs_pass_the_check(built):
    cell = Cell("m", "ddp", 1, "full", "fp32", 2, 16, 2)
    checked = job.check_inputs(cell, built / "model", built / "cache")
    assert checked["cache"]["splits"]["train"]["blocks"] >= 2 and checked["model"]["kind"] == "model"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.unlink()  # break a hard link / copy-on-write share rather than editing the original
    path.write_bytes(data[: len(data) // 2])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.unlink()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip_byte], ids=["truncated", "corrupted"])
@pytest.mark.parametrize("split", tokcache.SPLITS)
def test_a_damaged_token_cache_file_is_refused_before_training(built, tmp_path, unchanged, damage, split):
    cache = tmp_path / "cache"
    shutil.copytree(built / "cache", cache)
    damage(cache / f"{split}.npy")
    cell = Cell("m", "ddp", 1, "full", "fp32", 2, 16, 2)
    with pytest.raises(files.CorruptResource) as error:
        job.check_inputs(cell, built / "model", cache)
    message = str(error.value)
    assert f"token cache file {cache / f'{split}.npy'} " in message
    assert ("bytes, its manifest says" if damage is truncate else "has sha256") in message
    assert "snakemake --forcerun build_token_cache" in message and "delete" in message


def test_a_truncated_split_is_refused_by_open_split_too(built, tmp_path):
    shutil.copytree(built / "cache", tmp_path / "cache")
    truncate(tmp_path / "cache" / "train.npy")
    with pytest.raises(files.CorruptResource, match=r"train.npy cannot be opened .*forcerun build_token_cache"):
        tokcache.open_split(tmp_path / "cache", "train")


@pytest.mark.parametrize("damage", [truncate, flip_byte], ids=["truncated", "corrupted"])
def test_damaged_model_weights_are_refused_before_training(built, tmp_path, unchanged, damage):
    model = tmp_path / "model"
    shutil.copytree(built / "model", model)
    damage(model / "model.safetensors")
    cell = Cell("m", "ddp", 1, "full", "fp32", 2, 16, 2)
    with pytest.raises(files.CorruptResource) as error:
        job.check_inputs(cell, model, built / "cache")
    message = str(error.value)
    assert f"model file {model / 'model.safetensors'} " in message
    assert "snakemake --forcerun prepare_model" in message and f"delete {model / 'manifest.json'}" in message


def test_a_missing_file_is_named(built, tmp_path):
    shutil.copytree(built / "model", tmp_path / "model")
    (tmp_path / "model" / "config.json").unlink()
    with pytest.raises(files.CorruptResource, match=r"model file .*config.json is missing"):
        files.verify_manifest(tmp_path / "model", what="model")


def test_files_past_the_hash_budget_get_the_size_check_only(built, tmp_path):
    shutil.copytree(built / "cache", tmp_path / "cache")
    flip_byte(tmp_path / "cache" / "train.npy")  # the larger split
    eval_size = (tmp_path / "cache" / "eval.npy").stat().st_size
    files.verify_manifest(tmp_path / "cache", hash_budget=eval_size)  # hashes eval.npy only: passes
    with pytest.raises(files.CorruptResource, match="has sha256"):
        files.verify_manifest(tmp_path / "cache", hash_budget=None)


def test_manifests_without_sizes_are_still_checked_by_hash(built, tmp_path):
    shutil.copytree(built / "cache", tmp_path / "cache")
    manifest = files.read_json(tmp_path / "cache" / "manifest.json")
    del manifest["sizes"]
    files.atomic_write_json(tmp_path / "cache" / "manifest.json", manifest)
    files.verify_manifest(tmp_path / "cache")
    truncate(tmp_path / "cache" / "eval.npy")
    with pytest.raises(files.CorruptResource, match=r"eval\.npy has sha256"):
        files.verify_manifest(tmp_path / "cache")


# --- Results ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, why",
    [
        (lambda good: good[: len(good) // 2], "JSONDecodeError"),
        (lambda good: b"", "JSONDecodeError"),
        (lambda good: b"\xff\xfe" + good, "UnicodeDecodeError"),
        (lambda good: b"[1, 2]", "a JSON list, not an object"),
        (lambda good: good.replace(b'"ok"', b'"fine"'), "status 'fine' is not one of"),
    ],
    ids=["truncated", "empty", "not-utf8", "not-an-object", "unknown-status"],
)
def test_an_unreadable_metrics_json_is_a_failed_row_naming_the_cell(work, content, why, caplog, checksums):
    path = metrics_files(work)[1]
    path.write_bytes(content(path.read_bytes()))
    before = checksums(work)
    frame = aggregate.collect([record(c) for c in CELLS], metrics_files(work))
    assert checksums(work) == before
    rows = {r["cell_id"]: r for r in frame.iter_rows(named=True)}
    assert rows[CELLS[0]]["status"] == "ok"
    bad = rows[CELLS[1]]
    assert bad["status"] == "failed" and bad["train_tokens_per_s"] is None
    assert bad["note"].startswith(f"metrics.json unreadable: {path}: ") and why in bad["note"]
    assert any(CELLS[1] in r.getMessage() and "metrics.json unreadable" in r.getMessage() for r in caplog.records)
    assert set(frame.get_column("status")) <= {"ok", "oom", "timeout", "failed", "pruned", "pending"}


def test_an_unreadable_failure_json_is_still_a_failed_row(work):
    path = metrics_files(work)[1]
    path.unlink()
    (path.parent / "failure.json").write_text('{"status": "fai')
    frame = aggregate.collect([record(c) for c in CELLS], metrics_files(work))
    row = frame.row(1, named=True)
    assert row["status"] == "failed" and row["note"].startswith("failure.json unreadable:")


def test_results_are_written_atomically():
    """No module writes a file in place: every result goes through files.atomic_write_*."""
    in_place = re.compile(r"\.write_(text|bytes)\(|open\([^)]*['\"][wa]b?['\"]|np\.save\(|\.to_csv\(|json\.dump\(")
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(SRC.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if in_place.search(line) and path.name != "files.py"
    ]
    assert offenders == []


def test_rebuild_with_a_corrupt_metrics_json_keeps_every_result(work, checksums):
    """The onerror rebuild over a truncated metrics.json: the summary and README say failed, and no file of
    results/runs is touched."""
    path = metrics_files(work)[0]
    path.write_bytes(path.read_bytes()[:40])
    runs_before = {k: v for k, v in checksums(work).items() if k.startswith(f"results/{RUN}/runs/")}
    res = work / "results" / RUN
    docs = work / "docs" / RUN
    paths = ReportPaths(
        *(str(res / name) for name in ("calibration.json", "summary.parquet", "summary.csv")),
        str(docs / "summary.csv"), str(res / "tables.md"), str(docs / "charts"),
    )  # fmt: skip
    tables.rebuild([record(c) for c in CELLS], metrics_files(work), [], paths, work / "README.md", RUN)
    assert {k: v for k, v in checksums(work).items() if k.startswith(f"results/{RUN}/runs/")} == runs_before
    readme = (work / "README.md").read_text()
    assert "| failed |" in readme and "| ok |" in readme and readme.startswith("# notes\n\nby hand\n")


# --- README -----------------------------------------------------------------------------------------------


def test_a_readme_without_markers_gets_a_marked_section_appended(work):
    readme = work / "README.md"
    readme.write_text("# mine\n\nhand-written\n")
    res = work / "results" / RUN
    tables.publish(res / "summary.csv", work / "docs" / "summary.csv", readme, res / "tables.md", RUN)
    begin, end = tables.markers(RUN)
    text = readme.read_text()
    assert text.startswith("# mine\n\nhand-written\n\n" + begin + "\n") and text.endswith(end + "\n")
    assert "#### m" in text


@pytest.mark.parametrize("broken", ["begin-only", "end-only", "two-begins", "end-before-begin"])
def test_unbalanced_markers_leave_readme_and_docs_untouched(work, broken, checksums):
    begin, end = tables.markers(RUN)
    text = {
        "begin-only": f"# t\n{begin}\nold\n",
        "end-only": f"# t\nold\n{end}\n",
        "two-begins": f"{begin}\n{begin}\nold\n{end}\n",
        "end-before-begin": f"{end}\nold\n{begin}\n",
    }[broken]
    (work / "README.md").write_text(text)
    before = checksums(work)
    res = work / "results" / RUN
    docs = work / "docs" / "summary.csv"
    with pytest.raises(ValueError, match=r"README markers are unbalanced .* the file was left untouched"):
        tables.publish(res / "summary.csv", docs, work / "README.md", res / "tables.md", RUN)
    assert checksums(work) == before and (work / "README.md").read_text() == text
    assert not docs.exists() and not (res / "tables.md").exists()


def test_compile_on_cpu_without_a_compiler_names_the_option(monkeypatch):
    import torch

    from ftbench.train.strategies.base import TrainEnv, compile_requested

    cell = Cell("m", "ddp", 1, "full", "fp32", 2, 16, 2)
    env = TrainEnv(0, 1, 0, torch.device("cpu"), 1e-3, 0.0, 1.0, {"ddp": {"compile": True}})
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    with pytest.raises(ValueError, match=r"options\.ddp\.compile: .*'no-such-c\+\+-compiler' is not on PATH"):
        compile_requested(cell, env)
    monkeypatch.setenv("CXX", "g++")
    assert compile_requested(cell, env) is True
    assert compile_requested(cell, TrainEnv(0, 1, 0, torch.device("cpu"), 1e-3, 0.0, 1.0, {})) is False
