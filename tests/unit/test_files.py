import json

from ftbench import files


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    files.atomic_write_json(target, {"b": 1, "a": [1.5]})
    files.atomic_write_json(target, {"status": "ok"})
    assert json.loads(target.read_text()) == {"status": "ok"}
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_manifest_hashes_every_file_but_itself(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.bin").write_bytes(b"\x00\x01")
    manifest = files.write_manifest(tmp_path, kind="x", source="s")
    assert set(manifest["files"]) == {"a.txt", "d/b.bin"}
    assert manifest["files"]["a.txt"] == files.sha256_file(tmp_path / "a.txt")
    assert files.write_manifest(tmp_path, kind="x", source="s") == manifest  # manifest.json not hashed
