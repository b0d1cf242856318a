"""`python -m ftbench.data <rule>`: the builder rules' program (a dataset, tokenizer, model or token cache).

The rules run it as a shell command, as train_cell runs ftbench.launch: Snakemake compares the command's
text, not the package's files, so editing the package re-builds nothing (a builder whose output changes
raises ftbench.plan.builds.REVISION instead, which moves every directory).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ftbench import logs
from ftbench.plan.builds import BUILDER_RULES, RENDER_KEYS, schema_defaults


def _render(params: dict):
    from ftbench.data.sources import Render

    defaults = schema_defaults()["dataset"]
    return Render(**{k: params.get("render", {}).get(k, defaults[k]) for k in RENDER_KEYS})


def run(rule: str, params: dict, inputs: dict[str, Path], out: Path, name: str) -> dict:
    """Build `rule`'s directory `out` from its canonical params (defaults filled back in) and input dirs.
    Each rule imports only what it runs: the hub env that downloads has no numpy or torch."""
    dataset, seed = schema_defaults()["dataset"], params.get("seed", schema_defaults()["seed"])
    get = lambda key: params.get(key, dataset.get(key))  # noqa: E731
    model = {"name": name, **params}
    if rule.startswith("download_"):
        from ftbench.data import download

        if rule == "download_dataset":
            return download.download_dataset(params["source"], out, get("files"), get("split"), get("sample_by"))
        if rule == "download_tokenizer":
            return download.download_tokenizer(params["source"], out)
        return download.download_model(model, inputs["tokenizer"], out)
    from ftbench.data import sources

    if rule == "prepare_dataset":
        return sources.prepare_dataset(params["source"], out, get("num_rows"), seed)
    if rule == "train_tokenizer":
        return sources.train_tokenizer(params["source"], inputs["dataset"], _render(params), out)
    if rule == "prepare_model":
        return sources.prepare_model(model, inputs["tokenizer"], out, seed)
    from ftbench.data import tokcache

    return tokcache.build(
        inputs["dataset"], inputs["tokenizer"], out, _render(params), params["seq_len"], get("eval_fraction"), seed
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ftbench.data", description=__doc__)
    parser.add_argument("rule", choices=BUILDER_RULES)
    parser.add_argument("--params", required=True, help="the build's canonical parameters (JSON)")
    parser.add_argument("--inputs", default="{}", help="{role: manifest path} of the builds it reads (JSON)")
    parser.add_argument("--out", required=True, help="the manifest to write; its directory holds the build")
    parser.add_argument("--name", required=True, help="the dataset, tokenizer or model name (for messages)")
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    logs.to_file(args.log)
    inputs = {role: Path(path).parent for role, path in json.loads(args.inputs).items()}
    try:
        run(args.rule, json.loads(args.params), inputs, Path(args.out).parent, args.name)
    except Exception:
        logging.getLogger(__name__).exception("%s %s failed", args.rule, args.out)
        raise
