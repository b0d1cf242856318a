"""Small file helpers every stage shares: atomic writes, hashes, manifests."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

MANIFEST = "manifest.json"


def umask() -> int:
    """The process's umask, read without changing it (Linux), else by setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(path: Path) -> int:
    """An existing file's permission bits, else what a new file gets: 0666 less the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one, never a half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp's 0600 would survive the rename: a file gets the mode open() gives it (or keeps its own)
        os.fchmod(fd, file_mode(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_tree(directory: str | os.PathLike) -> dict[str, str]:
    """sha256 of every file under `directory` except the manifest, keyed by relative path."""
    directory = Path(directory)
    return {
        p.relative_to(directory).as_posix(): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def size_tree(directory: str | os.PathLike, names) -> dict[str, int]:
    """Byte size of each of `names` under `directory` (symlinks followed)."""
    directory = Path(directory)
    return {name: (directory / name).stat().st_size for name in names}


def write_manifest(directory: str | os.PathLike, **fields) -> dict:
    """Record what a resource directory holds (source, revision or seed, file hashes and sizes) beside it."""
    files = hash_tree(directory)
    manifest = {**fields, "files": files, "sizes": size_tree(directory, files)}
    atomic_write_json(Path(directory) / MANIFEST, manifest)
    return manifest


HASH_BUDGET_BYTES = 1 << 30
"""How many bytes `verify_manifest` hashes per directory by default (about 0.7 s at the ~1.5 GB/s sha256
runs here); files past the budget get the size check only."""


class CorruptResource(ValueError):
    """A file of a resource directory is missing, truncated or changed since its manifest was written."""


def rebuild_hint(directory: str | os.PathLike, rule: str = "") -> str:
    """How to rebuild a resource directory whose files are damaged (`rule`: the Snakemake rule making it)."""
    manifest_path = Path(directory) / MANIFEST
    return f"delete {manifest_path} (or the whole directory) so Snakemake rebuilds it" + (
        f", or run `snakemake --forcerun {rule}`" if rule else ""
    )


def verify_manifest(
    directory: str | os.PathLike,
    names=None,
    hash_budget: int = HASH_BUDGET_BYTES,
    rebuild: str = "",
    what: str = "resource",
) -> dict:
    """Check the files of `directory` against its manifest before they are used: every file exists and has
    the recorded size (manifests older than `sizes` skip that), and its sha256 matches while the bytes
    hashed stay within `hash_budget` (smallest files first; `None`: no limit). `names` narrows the check
    to some files. Raise `CorruptResource` naming the file and how to rebuild; return the manifest."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    hint = rebuild_hint(directory, rebuild)
    try:
        manifest = read_json(manifest_path)
    except (OSError, ValueError) as e:
        raise CorruptResource(f"{what} manifest {manifest_path} is unreadable ({e}); {hint}") from None
    hashes, sizes = manifest.get("files", {}), manifest.get("sizes", {})
    names = list(hashes) if names is None else list(names)
    actual = {}
    for name in names:
        path = directory / name
        if name not in hashes:
            raise CorruptResource(f"{what} file {path} is not in {manifest_path}; {hint}")
        try:
            actual[name] = path.stat().st_size
        except OSError as e:
            raise CorruptResource(f"{what} file {path} is missing ({e.strerror}); {hint}") from None
        if name in sizes and actual[name] != sizes[name]:
            raise CorruptResource(
                f"{what} file {path} is {actual[name]} bytes, its manifest says {sizes[name]} "
                f"(truncated or replaced); {hint}"
            )
    spent = 0
    for name in sorted(names, key=actual.__getitem__):
        spent += actual[name]
        if hash_budget is not None and spent > hash_budget:
            break
        digest = sha256_file(directory / name)
        if digest != hashes[name]:
            raise CorruptResource(
                f"{what} file {directory / name} has sha256 {digest[:12]}, its manifest says {hashes[name][:12]} "
                f"(corrupted or changed since it was written); {hint}"
            )
    return manifest


def read_json(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
