"""What each resource directory is built from, and where it lies: keyed by content.

A build is a kind (dataset, tokenizer, model, token cache), a readable name, its parameters in canonical
form (keys sorted, keys at their schema default left out) and the builds it reads. Its directory is
`resources/<kind>/<name>.<key>`, the key a hash of all that: two runs whose builds differ never share a
directory, two that agree share it, and a key written in another order, or a default added later, changes
nothing. The rules take a build's canonical parameters as their params, so Snakemake re-runs a builder
exactly when its directory's content would change, which is when its path changes too.

Directories from before content keys (`resources/<kind>/<name>`) stay in use where they hold what the
config asks for: `ftbench.plan.legacy`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field

from ftbench.errors import ConfigError
from ftbench.files import MANIFEST
from ftbench.plan.config import (
    is_download,
    local_path,
    model_config,
    source_kind,
    tokenizer_id,
    tokenizer_source,
)
from ftbench.plan.config_doc import REPO

RESOURCES = "resources"
KIND_DIRS = {"dataset": "datasets", "tokenizer": "tokenizers", "model": "models", "tokcache": "tokcache"}
REVISION = 1
"""Part of every key: raise it when a builder's output changes for the same parameters, so that every
directory is rebuilt at a new path (a code change that cannot change the files re-runs nothing). That
includes a changed schema default of a key a build reads: keys at their default are left out of the key
(tests/unit/test_builds.py pins those defaults to this revision)."""
RENDER_KEYS = ("format", "template", "messages_column", "message_template")
"""The `dataset.*` keys that turn rows into documents: the tokenizer and the token cache depend on them."""


@functools.cache
def schema_defaults() -> dict:
    """The schema's defaults of the keys builds read: {'dataset': {...}, 'seed': ...}."""
    from ftbench.plan.config_check import load_schema  # which imports model_shape, which imports this

    properties = load_schema(REPO)["properties"]
    dataset = {k: v["default"] for k, v in properties["dataset"]["properties"].items() if "default" in v}
    return {"dataset": dataset, "seed": properties["seed"]["default"]}


def canonical(params: dict, defaults: dict) -> dict:
    """`params` without the keys at their default (an unset key stays out), keys sorted."""
    return {k: params[k] for k in sorted(params) if k not in defaults or params[k] != defaults[k]}


@dataclass(frozen=True)
class Build:
    kind: str
    name: str
    rule: str
    params: dict = field(hash=False)
    inputs: tuple[tuple[str, Build], ...] = ()

    @functools.cached_property
    def key(self) -> str:
        content = {
            "kind": self.kind,
            "revision": REVISION,
            "params": self.params,
            "inputs": {role: build.key for role, build in self.inputs},
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def id(self) -> str:
        """The builder rule's wildcard: the directory under resources/<kind>/."""
        return f"{self.name}.{self.key}"

    def directory(self, root: str | os.PathLike = RESOURCES) -> str:
        return os.path.join(root, KIND_DIRS[self.kind], self.id)

    @property
    def manifest(self) -> str:
        return os.path.join(self.directory(), MANIFEST)

    @property
    def legacy_directory(self) -> str:
        """Where this build lay before content keys."""
        return os.path.join(RESOURCES, KIND_DIRS[self.kind], self.name)

    def input(self, role: str) -> Build:
        return dict(self.inputs)[role]

    @property
    def params_json(self) -> str:
        """The rule's params and the builder's argument, one canonical text."""
        return json.dumps(self.params, sort_keys=True)


def _seed(config: dict) -> dict:
    return canonical({"seed": config["seed"]}, schema_defaults())


def dataset_build(config: dict) -> Build:
    dataset, defaults = config["dataset"], schema_defaults()["dataset"]
    if is_download(dataset["source"]):
        keys, rule, seed = ("source", "files", "split", "sample_by"), "download_dataset", {}
    else:
        keys, rule, seed = ("source", "num_rows"), "prepare_dataset", _seed(config)
    params = canonical({k: dataset.get(k) for k in keys}, {**defaults, "files": None, "split": None})
    return Build("dataset", dataset["name"], rule, {**params, **seed})


def render_params(config: dict) -> dict:
    return canonical({k: config["dataset"][k] for k in RENDER_KEYS}, schema_defaults()["dataset"])


def tokenizer_build(config: dict, model: dict) -> Build:
    source = tokenizer_source(model)
    name = tokenizer_id(config, model)
    if is_download(source):
        return Build("tokenizer", name, "download_tokenizer", {"source": source})
    params = {"source": source, **({"render": render} if (render := render_params(config)) else {})}
    return Build("tokenizer", name, "train_tokenizer", params, (("dataset", dataset_build(config)),))


def model_build(config: dict, name: str) -> Build:
    model = model_config(config, name)
    tokenizer = (("tokenizer", tokenizer_build(config, model)),)
    if is_download(model["source"]):
        return Build("model", name, "download_model", {"source": model["source"]}, tokenizer)
    if source_kind(model["source"]) != "config":
        raise ConfigError(f"models[{name}].source: unsupported source {model['source']!r}")
    params = {"source": model["source"], "architecture": model["architecture"], **_seed(config)}
    return Build("model", name, "prepare_model", params, tokenizer)


def cache_build(config: dict, model_name: str, seq: int) -> Build:
    tokenizer = model_build(config, model_name).input("tokenizer")
    dataset = dataset_build(config)
    dataset_keys = canonical({"eval_fraction": config["dataset"]["eval_fraction"]}, schema_defaults()["dataset"])
    render = render_params(config)
    params = {"seq_len": seq, **dataset_keys, **({"render": render} if render else {}), **_seed(config)}
    name = f"{dataset.name}/{tokenizer.name}/seq{seq}"
    return Build("tokcache", name, "build_token_cache", params, (("dataset", dataset), ("tokenizer", tokenizer)))


@dataclass(frozen=True)
class Builds:
    """Every build a config's cells need, by rule and id (the rules' wildcards)."""

    by_rule: dict[str, dict[str, Build]]

    @classmethod
    def of(cls, config: dict, seq_lens) -> Builds:
        by_rule: dict[str, dict[str, Build]] = {}

        def add(build: Build) -> None:
            by_rule.setdefault(build.rule, {})[build.id] = build
            for _, upstream in build.inputs:
                add(upstream)

        add(dataset_build(config))
        for model in config["models"]:
            add(model_build(config, model["name"]))
            for seq in seq_lens:
                add(cache_build(config, model["name"], seq))
        return cls(by_rule)


def model_dir(config: dict, name: str, root: str | os.PathLike = RESOURCES) -> str:
    """Where model `name` lies once built or downloaded (a directory from before content keys where it
    holds this build)."""
    from ftbench.plan import legacy

    build = model_build(config, name)
    adopted = legacy.adopted_model(config, build) if root == RESOURCES else None
    return adopted or build.directory(root)


def one_of(names) -> str:
    """A wildcard regex matching exactly `names` (nothing when there are none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


@dataclass(frozen=True)
class BuilderRule:
    """What one builder rule reads of the builds: the ids its wildcard takes, and per job its inputs and
    params (the build's canonical parameters, its input manifests, its name)."""

    rule: str
    builds: dict[str, Build]

    @property
    def ids(self) -> str:
        return one_of(sorted(self.builds))

    def _upstream(self, wildcards) -> dict[str, str]:
        return {role: upstream.manifest for role, upstream in self.builds[wildcards.build].inputs}

    def inputs(self, wildcards) -> dict[str, str]:
        source = self.builds[wildcards.build].params.get("source", "")
        # a local source is an input: editing its files re-runs the download
        local = {"local": local_path(source)} if source_kind(source) == "local" else {}
        return self._upstream(wildcards) | local

    @property
    def params(self) -> dict:
        return {
            "rule": self.rule,
            "build": lambda wildcards: self.builds[wildcards.build].params_json,
            "inputs": lambda wildcards: json.dumps(self._upstream(wildcards), sort_keys=True),
            "name": lambda wildcards: self.builds[wildcards.build].name,
        }


BUILDER_RULES = (
    "prepare_dataset",
    "download_dataset",
    "train_tokenizer",
    "download_tokenizer",
    "prepare_model",
    "download_model",
    "build_token_cache",
)


def builder_rules(builds: Builds) -> dict[str, BuilderRule]:
    return {rule: BuilderRule(rule, builds.by_rule.get(rule, {})) for rule in BUILDER_RULES}


BUILD_COMMAND = (
    "python -m ftbench.data {params.rule} --params {params.build:q} --inputs {params.inputs:q}"
    " --name {params.name:q} --out {output.manifest} --log {log}"
)
"""The builder rules' shell command: its text is what Snakemake compares for their code."""
