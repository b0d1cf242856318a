# Validation, wildcard constraints and the input/param functions: the only .smk file with `def`s.
import dataclasses
import json
import os
import re

from snakemake.logging import logger
from snakemake.utils import validate

from ftbench.config import (
    is_download,
    local_path,
    model_build_config,
    model_config,
    tokenizer_id,
    tokenizer_source as tokenizer_source_of,
)
from ftbench.matrix import job_spec, plan
from ftbench.slurm import job_resources, runtime_min
from ftbench.tables import check_pivots
from ftbench.sources import Render

validate(config, schema="../schemas/config.schema.yaml", set_default=True)
# the matrix, pruned and checked: a ConfigError stops here, before any job
PLAN = plan(config)
check_pivots(config["report"]["pivots"])
CELLS = {cell.id: cell for cell in PLAN.cells}
# config `select`: the cells this invocation runs
SELECTED = [cell.id for cell in PLAN.selected]
MODELS = [model["name"] for model in config["models"]]
RUN = config["run_name"]
DATASET = config["dataset"]["name"]
RUN_DIR = f"results/{RUN}"
RENDER = dataclasses.asdict(Render.from_dataset(config["dataset"]))
CELL_DIR = "{model}/{strategy}/{gpus}gpu/{method}-{precision}-bs{bs}-seq{seq}"
REPEATS = config["repeats"]
# one training job: the cell itself, or with repeats one of its runs (rules/repeats.smk merges them)
TRAIN_DIR = os.path.join(CELL_DIR, "repeat-{repeat}") if REPEATS > 1 else CELL_DIR
EXTENSIONS_DIR = "resources/torch_extensions"
CHARTS_DIR = f"{config['report']['docs_dir']}/{RUN}/charts"
CALIBRATION_TIMEOUT_S = 600

for _cell, _reason in PLAN.pruned:
    logger.info(f"pruned {_cell.id}: {_reason}")


wildcard_constraints:
    model="|".join(m["name"] for m in config["models"]),
    strategy="|".join(config["matrix"]["strategies"]),
    gpus=r"\d+",
    bs=r"\d+",
    seq=r"\d+",
    repeat=r"\d+",


def one_of(names):
    """A wildcard regex matching exactly `names` (nothing when there are none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


# Built resources come from sources.smk, fetched ones (hf, local) from download.smk (localrules).
DOWNLOADED_DATASET = one_of(
    [DATASET] if is_download(config["dataset"]["source"]) else []
)
BUILT_DATASET = one_of([] if is_download(config["dataset"]["source"]) else [DATASET])
DOWNLOADED_MODELS = one_of(
    m["name"] for m in config["models"] if is_download(m["source"])
)
BUILT_MODELS = one_of(
    m["name"] for m in config["models"] if not is_download(m["source"])
)


def local_input(source):
    """A local source's path, so Snakemake checks it exists and re-runs the download when it changes."""
    return [local_path(source)] if source.startswith("local:") else []


def metrics_file(cell_id):
    return f"{RUN_DIR}/runs/{cell_id}/metrics.json"


def all_targets():
    return [
        *(metrics_file(cell_id) for cell_id in SELECTED),
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
            return tokenizer_source_of(model)
    raise ValueError(f"no model uses tokenizer {wildcards.tokenizer}")


def tokenizer_download_inputs(wildcards):
    return local_input(tokenizer_source(wildcards))


def model_download_inputs(wildcards):
    source = model_config(config, wildcards.model)["source"]
    return {
        "tokenizer": model_tokenizer_manifest(wildcards),
        **({"local": local_path(source)} if source.startswith("local:") else {}),
    }


def train_inputs(wildcards):
    tok = tokenizer_of(wildcards.model)
    return {
        "model": f"resources/models/{wildcards.model}/manifest.json",
        "cache": f"resources/tokcache/{DATASET}/{tok}/seq{wildcards.seq}/manifest.json",
    }


def cell_resource(name):
    """One Slurm resource of a training cell's job (ftbench.slurm.job_resources), per cell."""
    runtime = runtime_min(config["limits"]["cell_timeout_s"])
    return lambda wildcards: job_resources(
        config["hardware"], int(wildcards.gpus), runtime
    )[name]


def calibration_resource(name):
    """One Slurm resource of the calibration job: one GPU of the kind the cells run on."""
    return job_resources(config["hardware"], 1, runtime_min(CALIBRATION_TIMEOUT_S))[
        name
    ]


def train_spec(wildcards):
    return json.dumps(job_spec(config, cell_of(wildcards)), sort_keys=True)


def compare_reference(wildcards):
    """The reference summary of `snakemake compare`: a run_name's summary, or a path to a summary.csv."""
    reference = config["compare"]["reference"]
    if not reference:
        raise ValueError(
            "compare.reference is not set: give another run_name or a summary.csv path, e.g. "
            "--config 'compare={reference: cpu-default-old}'"
        )
    return (
        reference if reference.endswith(".csv") else f"results/{reference}/summary.csv"
    )


def rebuild_report():
    """Rebuild summary and README tables from what exists, failed and pending cells included."""
    from ftbench.tables import rebuild

    rebuild(
        cells=list(CELLS),
        metrics_files=[metrics_file(cell_id) for cell_id in CELLS],
        pruned={cell.id: reason for cell, reason in PLAN.pruned},
        calibration=f"{RUN_DIR}/calibration.json",
        parquet=f"{RUN_DIR}/summary.parquet",
        csv=f"{RUN_DIR}/summary.csv",
        docs_summary=f"{config['report']['docs_dir']}/{RUN}/summary.csv",
        readme=config["report"]["readme"],
        tables_md=f"{RUN_DIR}/tables.md",
        run_name=RUN,
        charts_dir=CHARTS_DIR,
        pivots=config["report"]["pivots"],
    )
