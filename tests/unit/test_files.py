import json
import os

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


def test_atomic_writes_keep_the_users_umask_and_an_existing_files_mode(tmp_path):
    previous = os.umask(0o027)
    try:
        fresh = tmp_path / "summary.csv"
        files.atomic_write_text(fresh, "a\n")
        assert fresh.stat().st_mode & 0o777 == 0o640  # what open() gives under this umask, not mkstemp's 0600
        shared = tmp_path / "README.md"
        shared.write_text("x")
        shared.chmod(0o664)
        files.atomic_write_text(shared, "y")
        assert shared.stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(previous)
