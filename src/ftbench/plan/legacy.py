"""Resource directories from before content keys (`resources/<kind>/<name>`), kept in use where their
manifests show they hold what the config asks for.

A finished cell recorded its input paths; were they to change, Snakemake would re-run it. So a training
job reads the old model and token cache directories as long as they match its builds (the manifests
record the sources, seeds, architecture, rendering and the files each was made from); no rule makes them
any more, so nothing rebuilds or dates them. Where anything differs, or a manifest is missing, the cell
takes the content-keyed directories (ftbench.plan.builds) and runs.
"""

from __future__ import annotations

import dataclasses
import functools
import os

from ftbench.data.sources import Render
from ftbench.files import MANIFEST, read_json
from ftbench.plan.builds import REVISION, Build
from ftbench.plan.config import is_download, source_kind

OLD_REVISION = 1
"""The builds.REVISION the old directories correspond to."""
BUILTIN_REVISION = "builtin-v1"
TOKENIZER_FILE = "tokenizer.json"


@functools.cache
def _manifest(directory: str, mtime_ns: int) -> dict | None:
    try:
        return read_json(os.path.join(directory, MANIFEST))
    except (OSError, ValueError):
        return None


def manifest(build: Build) -> dict | None:
    """The manifest of `build`'s old directory, None when there is none."""
    directory = os.path.abspath(build.legacy_directory)
    try:
        mtime = os.stat(os.path.join(directory, MANIFEST)).st_mtime_ns
    except OSError:
        return None
    return _manifest(directory, mtime)


def _dataset_matches(config: dict, held: dict) -> bool:
    dataset, seed = config["dataset"], config["seed"]
    if held.get("source") != dataset["source"]:
        return False
    if is_download(dataset["source"]):
        from ftbench.data.download import data_patterns

        return held.get("sample_by") == dataset["sample_by"] and held.get("patterns") == data_patterns(
            dataset.get("files"), dataset.get("split")
        )
    return (held.get("revision"), held.get("seed"), held.get("rows")) == (BUILTIN_REVISION, seed, dataset["num_rows"])


def _kept(build: Build) -> bool:
    """Whether an old directory may stand for `build` at all: not once REVISION moved every build (the old
    directories were made by the first builders), nor for a chain reading a `local:` source, whose edited
    files only a download rule's input would notice."""
    chain, sources = [build], []
    while chain:
        current = chain.pop()
        sources.append(current.params.get("source", ""))
        chain.extend(upstream for _, upstream in current.inputs)
    return REVISION == OLD_REVISION and not any(source_kind(s) == "local" for s in sources)


def adopted_model(config: dict, build: Build) -> str | None:
    """`build`'s old directory when its manifest records the same model (source, and a built model's seed
    and architecture, or a downloaded one's tokenizer) with the files of the same tokenizer."""
    held, tokenizer = manifest(build), build.input("tokenizer")
    held_tokenizer = manifest(tokenizer)
    if not _kept(build) or held is None or held_tokenizer is None or held.get("source") != build.params["source"]:
        return None
    if build.rule == "download_model":
        same = held.get("tokenizer") == tokenizer.params["source"]
    else:
        same = (held.get("seed"), held.get("architecture")) == (config["seed"], build.params["architecture"])
    same_tokenizer = held_tokenizer.get("source") == tokenizer.params["source"] and held_tokenizer.get("files", {}).get(
        TOKENIZER_FILE
    ) == held.get("files", {}).get(TOKENIZER_FILE)
    return build.legacy_directory if same and same_tokenizer else None


def adopted_inputs(config: dict, model: Build, cache: Build) -> tuple[str, str] | None:
    """The old (model, token cache) directories of a training job, when both hold its builds and were made
    from the same tokenizer (the one the model's files carry) and the same dataset files; else None."""
    model_dir = adopted_model(config, model)
    tokenizer = cache.input("tokenizer")
    held_cache, held_dataset, held_tokenizer = (manifest(b) for b in (cache, cache.input("dataset"), tokenizer))
    if model_dir is None or not _kept(cache) or None in (held_cache, held_dataset, held_tokenizer):
        return None
    data_files, fingerprint = held_dataset.get("files"), held_cache.get("tokenizer_fingerprint")
    render = dataclasses.asdict(Render.from_dataset(config["dataset"]))
    dataset = config["dataset"]
    same_cache = (
        held_cache.get("seq_len") == cache.params["seq_len"]
        and (held_cache.get("eval_fraction"), held_cache.get("seed")) == (dataset["eval_fraction"], config["seed"])
        and held_cache.get("render") == render
        and held_cache.get("dataset") == data_files
    )
    same_tokenizer = (
        held_tokenizer.get("source") == tokenizer.params["source"]
        and (not tokenizer.inputs or held_tokenizer.get("dataset") == data_files)  # a BPE: trained on that data
        and held_tokenizer.get("files", {}).get(TOKENIZER_FILE) == fingerprint
        and manifest(model).get("files", {}).get(TOKENIZER_FILE) == fingerprint
    )
    if same_cache and same_tokenizer and _dataset_matches(config, held_dataset):
        return model_dir, cache.legacy_directory
    return None
