"""The download rules: hub (`hf:<repo_id>[@revision]`) and local (`local:<path>`) sources, linked into resources/.

Hub files come through the unmodified `huggingface_hub.snapshot_download` into its cache, which reads
HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE and HF_TOKEN itself and resumes interrupted downloads. Only the files
training needs are fetched. The resource directory then holds symlinks to the snapshot (or to the local
files): nothing is copied, and the manifest still records every file's sha256 plus the resolved commit.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from pathlib import Path

from ftbench.data.sources import DATA_EXTENSIONS, TOKENIZER_FILES, tokenizer_files
from ftbench.files import read_json, write_manifest
from ftbench.plan.config import local_path, parse_hf, source_kind
from ftbench.plan.model_shape import max_positions

log = logging.getLogger(__name__)

MODEL_FILES = ("*.json", "*.safetensors")
"""A model's config, weights (safetensors only) and their index; tokenizer files come from its tokenizer."""
TOP_LEVEL_ONLY = ("*/*",)
"""A model directory in Hugging Face format is flat: sub-folders (onnx/, original/, ...) are not fetched."""
LOGIN_HINT = "set HF_TOKEN or run `hf auth login`"


class SourceError(RuntimeError):
    """A source that cannot be fetched or is not what training needs; the message says which and why."""


def fetch_hf(source: str, repo_type: str, allow: list[str], ignore: list[str] | None, key: str) -> tuple[Path, str]:
    """`snapshot_download` the allowed files of a hub repo; return the snapshot directory and its commit."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, revision = parse_hf(source)
    where = f"{key}: {source} ({repo_type} on {constants.ENDPOINT})"
    try:
        snapshot = snapshot_download(
            repo_id, repo_type=repo_type, revision=revision, allow_patterns=allow, ignore_patterns=ignore
        )
    except GatedRepoError as e:  # a RepositoryNotFoundError too: catch it first
        raise SourceError(
            f"{where} is gated: accept its terms on the repository page, then {LOGIN_HINT} ({_first_line(e)})"
        ) from e
    except RevisionNotFoundError as e:
        raise SourceError(f"{where}: revision {revision!r} not found ({_first_line(e)})") from e
    except RepositoryNotFoundError as e:
        raise SourceError(
            f"{where} not found, or private/gated and no valid token was sent: check the id; for a gated or "
            f"private repository {LOGIN_HINT} ({_first_line(e)})"
        ) from e
    except LocalEntryNotFoundError as e:
        raise SourceError(
            f"{where} is not in the hub cache {constants.HF_HUB_CACHE} and the hub cannot be reached "
            f"(HF_HUB_OFFLINE={int(constants.HF_HUB_OFFLINE)}): download it once where the hub is reachable"
        ) from e
    snapshot = Path(snapshot)
    log.info("%s: snapshot %s", source, snapshot)
    return snapshot, snapshot.name  # the snapshot folder is named after the resolved commit


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _hub_fields(source: str, repo_type: str, commit: str) -> dict:
    from huggingface_hub import constants

    repo_id, revision = parse_hf(source)
    return {
        "repo_id": repo_id,
        "repo_type": repo_type,
        "revision": commit,
        "requested_revision": revision or "main",
        "endpoint": constants.ENDPOINT,
    }


def _files_under(root: Path) -> list[str]:
    """Relative paths of the files under `root`, hidden folders (.git, .cache) skipped, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [(Path(dirpath) / f).relative_to(root).as_posix() for f in filenames if not f.startswith(".")]
    return sorted(found)


def _reset(out_dir: Path) -> None:
    """Empty a resource directory, so files of an earlier source or revision never linger."""
    if out_dir.is_symlink() or out_dir.is_file():
        out_dir.unlink()
    elif out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)


def _link(src: Path, dest: Path) -> None:
    """Symlink `dest` -> `src` (absolute); copy only where the filesystem has no symlinks."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(os.path.abspath(src), dest)
    except OSError:
        log.warning("cannot symlink %s here: copying it", src)
        shutil.copy2(src, dest)


def _local_root(source: str, key: str) -> Path:
    path = Path(local_path(source))
    if not path.exists():
        raise SourceError(f"{key}: {source}: {path.resolve()} does not exist")
    return path


def resolve(source: str, repo_type: str, allow: list[str], ignore: list[str] | None, key: str) -> tuple[Path, dict]:
    """Where a hub (fetched) or local source lies, and the manifest fields that identify it."""
    if source_kind(source) == "hf":
        root, commit = fetch_hf(source, repo_type, allow, ignore, key)
        return root, _hub_fields(source, repo_type, commit)
    root = _local_root(source, key)
    return root, {"path": str(root.resolve())}


def data_patterns(files: list[str] | None, split: str | None) -> list[str]:
    """Glob patterns (relative to the dataset root) of the data files to use: `dataset.files`, else the files
    of `dataset.split` by the hub's naming (`<split>-*`, `<split>.*`, `<split>/`, at any depth), else all."""
    if files:
        return list(files)
    if split:
        return [f"{d}{split}{s}*" for d in ("", "*/") for s in ("-", ".", "/")]
    return [f"*.{ext}" for ext in DATA_EXTENSIONS]


def is_data_file(path: str, patterns: list[str]) -> bool:
    ext = path.rsplit(".", 1)[-1].lower()
    return ext in DATA_EXTENSIONS and any(fnmatch.fnmatch(path, p) for p in patterns)


def download_dataset(
    source: str,
    out_dir: str | Path,
    files: list[str] | None = None,
    split: str | None = None,
    sample_by: str = "paragraph",
    key: str = "dataset.source",
) -> dict:
    """Link a hub or local dataset's data files (csv, json, jsonl, parquet, txt) into `out_dir`, with manifest."""
    out_dir = Path(out_dir)
    patterns = data_patterns(files, split)
    root, extra = resolve(source, "dataset", patterns, None, key)
    if root.is_file():
        if not is_data_file(root.name, ["*"]):
            raise SourceError(f"{key}: {source} is not a {'/'.join(DATA_EXTENSIONS)} file")
        root, chosen = root.parent, [root.name]
    else:
        available = _files_under(root)
        chosen = [f for f in available if is_data_file(f, patterns)]
        if not chosen:
            raise SourceError(
                f"{key}: {source} has no data file ({', '.join(DATA_EXTENSIONS)}) matching {patterns} "
                f"(dataset.files / dataset.split); files there: {available[:20]}"
            )
    _reset(out_dir)
    for name in chosen:
        _link(root / name, out_dir / name)
    log.info("%s: %d data file(s): %s", source, len(chosen), chosen[:10])
    return write_manifest(
        out_dir, kind="dataset", source=source, **extra, data_files=chosen, sample_by=sample_by, patterns=patterns
    )


def download_tokenizer(source: str, out_dir: str | Path, key: str = "tokenizer") -> dict:
    """Link a hub or local tokenizer (the tokenizer files of a model repo or directory) into `out_dir`."""
    from tokenizers import Tokenizer

    out_dir = Path(out_dir)
    root, extra = resolve(source, "model", list(TOKENIZER_FILES), list(TOP_LEVEL_ONLY), key)
    found = tokenizer_files(root)
    if not any(p.name == "tokenizer.json" for p in found):
        raise SourceError(
            f"{key}: {source} has no tokenizer.json (a fast tokenizer; found {[p.name for p in found]}). "
            "Save one with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir)"
        )
    _reset(out_dir)
    for path in found:
        _link(path, out_dir / path.name)
    vocab = Tokenizer.from_file(str(out_dir / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    log.info("%s: %d tokenizer files, vocabulary %d", source, len(found), vocab)
    return write_manifest(out_dir, kind="tokenizer", source=source, **extra, vocab_size=vocab)


def _check_weights(names: set[str], root: Path, key: str, source: str) -> None:
    if "config.json" not in names:
        raise SourceError(f"{key}: {source} has no config.json: not a model in Hugging Face format")
    if not any(n.endswith(".safetensors") for n in names):
        raise SourceError(f"{key}: {source} has no *.safetensors weights (ftbench loads safetensors only)")
    index = root / "model.safetensors.index.json"
    if index.exists():
        shards = set(json.loads(index.read_text())["weight_map"].values())
        if shards - names:
            raise SourceError(f"{key}: {source}: shards {sorted(shards - names)} of its index are missing")


def download_model(model: dict, tokenizer_dir: str | Path, out_dir: str | Path) -> dict:
    """Link a hub or local model (config, safetensors weights) into `out_dir`, beside its tokenizer's files:
    the model trains with the tokenizer it names (its own by default), which the token cache was built with."""
    source, key = model["source"], f"models[{model['name']}].source"
    out_dir, tokenizer_dir = Path(out_dir), Path(tokenizer_dir)
    root, extra = resolve(source, "model", list(MODEL_FILES), list(TOP_LEVEL_ONLY), key)
    if not root.is_dir():
        raise SourceError(f"{key}: {source} is not a directory (a model in Hugging Face format)")
    tokenizer_names = {p.name for p in tokenizer_files(root)}
    names = {
        n
        for n in _files_under(root)
        if "/" not in n and n not in tokenizer_names and any(fnmatch.fnmatch(n, p) for p in MODEL_FILES)
    }
    _check_weights(names, root, key, source)
    _reset(out_dir)
    for name in sorted(names):
        _link(root / name, out_dir / name)
    for path in tokenizer_files(tokenizer_dir):
        _link(path, out_dir / path.name)
    tokenizer = read_json(tokenizer_dir / "manifest.json")
    log.info("%s: %d model files, tokenizer %s", source, len(names), tokenizer["source"])
    return write_manifest(
        out_dir,
        kind="model",
        source=source,
        **extra,
        tokenizer=tokenizer["source"],
        max_positions=max_positions(out_dir / "config.json"),
    )
