# Validation, wildcard constraints and the input/param functions: the only .smk file with `def`s.
import json
import os

from snakemake.logging import logger
from snakemake.utils import validate

from ftbench.config import model_config, tokenizer_id
from ftbench.matrix import job_spec, plan

validate(config, schema="../schemas/config.schema.yaml", set_default=True)
PLAN = plan(
    config
)  # the matrix, pruned and checked: a ConfigError stops here, before any job
CELLS = {cell.id: cell for cell in PLAN.cells}
RUN = config["run_name"]
DATASET = config["dataset"]["name"]
RUN_DIR = f"results/{RUN}"
CELL_DIR = "{model}/{strategy}/{gpus}gpu/{method}-{precision}-bs{bs}-seq{seq}"
EXTENSIONS_DIR = "resources/torch_extensions"

for _cell, _reason in PLAN.pruned:
    logger.info(f"pruned {_cell.id}: {_reason}")


wildcard_constraints:
    model="|".join(m["name"] for m in config["models"]),
    strategy="|".join(config["matrix"]["strategies"]),
    gpus=r"\d+",
    bs=r"\d+",
    seq=r"\d+",


def all_targets():
    return [
        *(f"{RUN_DIR}/runs/{cell_id}/metrics.json" for cell_id in CELLS),
        f"{RUN_DIR}/summary.parquet",
        f"{RUN_DIR}/calibration.json",
        f"{RUN_DIR}/tables.md",
    ]


def cell_of(wildcards):
    return CELLS[CELL_DIR.format(**wildcards)]


def tokenizer_of(model_name):
    return tokenizer_id(config, model_config(config, model_name))


def model_tokenizer_manifest(wildcards):
    return f"resources/tokenizers/{tokenizer_of(wildcards.model)}/manifest.json"


def tokenizer_source(wildcards):
    """The tokenizer source string behind a tokenizer directory name."""
    for model in config["models"]:
        if tokenizer_of(model["name"]) == wildcards.tokenizer:
            return model.get("tokenizer", "builtin:bpe-2048")
    raise ValueError(f"no model uses tokenizer {wildcards.tokenizer}")


def train_inputs(wildcards):
    tok = tokenizer_of(wildcards.model)
    return {
        "model": f"resources/models/{wildcards.model}/manifest.json",
        "cache": f"resources/tokcache/{DATASET}/{tok}/seq{wildcards.seq}/manifest.json",
    }


def train_spec(wildcards):
    return json.dumps(job_spec(config, cell_of(wildcards)), sort_keys=True)
