# Validation, wildcard constraints and the input/param functions: the only .smk file with `def`s.
import dataclasses
import functools
import inspect
import json
import os
import re

from snakemake.common import overwrite_function_params
from snakemake.common.tbdstring import TBDString
from snakemake.logging import logger
from snakemake.utils import validate

from ftbench.cell import CELL_PATTERN, OPTIONS_WILDCARD
from ftbench.plan.config import (
    calibrated_precisions,
    cell_timeout_s,
    is_download,
    local_path,
    model_build_config,
    model_config,
    tokenizer_id,
    tokenizer_source as tokenizer_source_of,
)
from ftbench.plan.config_check import check_config, check_local_sources
from ftbench.plan.host_memory import cell_request_gb
from ftbench.plan.model_shape import model_shape
from ftbench.plan.matrix import check_pivots, job_spec, plan
from ftbench.launch.slurm import job_resources, mem_mb, refuse_array_jobs, runtime_min
from ftbench.data.sources import Render
from ftbench.record import METRICS_FILE
from ftbench.report.paths import ReportPaths

# every mistake by its key path (unknown keys with the nearest valid one): a ConfigError stops here
check_config(config, workflow.basedir)
validate(config, schema="../schemas/config.schema.yaml", set_default=True)
# the matrix, pruned and checked: a ConfigError stops here, before any job
check_local_sources(config)
PLAN = plan(config)
check_pivots(config["report"]["pivots"])
CELLS = {cell.id: cell for cell in PLAN.cells}
# config `select`: the cells this invocation runs
SELECTED = [cell.id for cell in PLAN.selected]
# the GPU counts train_cell jobs run at
CELL_GPUS = sorted({cell.gpus for cell in PLAN.cells})
MODELS = [model["name"] for model in config["models"]]
RUN = config["run_name"]
DATASET = config["dataset"]["name"]
RUN_DIR = f"results/{RUN}"
RENDER = dataclasses.asdict(Render.from_dataset(config["dataset"]))
# the cell id (ftbench.cell's grammar): its fixed part, then the optional segments of non-default fields
CELL_DIR = f"{CELL_PATTERN}{{options}}"
REPEATS = config["repeats"]
# one training job: the cell itself, or with repeats one of its runs (rules/repeats.smk merges them)
TRAIN_DIR = os.path.join(CELL_DIR, "repeat-{repeat}") if REPEATS > 1 else CELL_DIR
EXTENSIONS_DIR = "resources/torch_extensions"
# the report chain's files (summary, tables, charts, calibration), for the rules and onerror alike
REPORT = ReportPaths.of_run(RUN, config["report"]["docs_dir"])
CHARTS_DIR = REPORT.charts_dir
CALIBRATION_TIMEOUT_S = 600
# the training rules' conda env: PyTorch's CPU build when the cells run on the CPU (envs/train-cpu.yaml)
TRAIN_ENV = (
    "../envs/train-cpu.yaml"
    if config["hardware"]["device"] == "cpu"
    else "../envs/train.yaml"
)

for _cell, _reason in PLAN.pruned:
    logger.info(f"pruned {_cell.id}: {_reason}")


onstart:
    # the executor's settings exist once the run starts (not while the Snakefile is read); nothing is submitted yet
    refuse_array_jobs(getattr(workflow.executor_settings, "array_jobs", None))


wildcard_constraints:
    model="|".join(m["name"] for m in config["models"]),
    strategy="|".join(config["matrix"]["strategies"]),
    gpus=r"\d+",
    bs=r"\d+",
    seq=r"\d+",
    options=OPTIONS_WILDCARD,
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
    return f"{RUN_DIR}/runs/{cell_id}/{METRICS_FILE}"


def all_targets():
    """The default target: every selected cell, the summary, the calibration and the README tables. The cells
    are listed although the summary needs them too: after a failed sweep the summary exists (rebuilt from what
    ran), and only a target naming the cells makes the next run retry the failed ones.
    """
    return [
        *(metrics_file(cell_id) for cell_id in SELECTED),
        REPORT.parquet,
        REPORT.calibration,
        REPORT.tables_md,
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


def per_job(func):
    """A function Snakemake calls once per job. Snakemake asks for its signature (which arguments it takes)
    twice on every call; giving it once here, through the hook Snakemake's own subpath() uses, saves that
    work on every job of a large matrix.
    """
    overwrite_function_params(func, inspect.signature(func).parameters)
    return func


def train_cache_input():
    """train_cell's token cache: a path pattern when every model shares one tokenizer (nothing to evaluate
    per job), else a function of the cell's model."""
    tokenizers = {name: tokenizer_of(name) for name in MODELS}
    if len(set(tokenizers.values())) == 1:
        return f"resources/tokcache/{DATASET}/{tokenizers[MODELS[0]]}/seq{{seq}}/manifest.json"
    return per_job(
        lambda wildcards: f"resources/tokcache/{DATASET}/{tokenizers[wildcards.model]}/seq{wildcards.seq}/manifest.json"
    )


def per_gpu_count(value_of):
    """A train_cell attribute that depends on the cell's GPU count alone, computed once per GPU count.

    Snakemake calls a function once per job (a 1,000-cell matrix: 1,000 calls per attribute), so an
    attribute with one value for every cell is given as that value instead of a function.
    """
    values = {gpus: value_of(gpus) for gpus in CELL_GPUS}
    if len(set(values.values())) == 1:
        return values[CELL_GPUS[0]]

    def of_cell(wildcards):
        gpus = int(wildcards.gpus)
        return values[gpus] if gpus in values else value_of(gpus)

    return per_job(of_cell)


def declared(resources):
    """Resources without the unset ones (None): Snakemake evaluates every declared resource of every job."""
    return {name: value for name, value in resources.items() if value is not None}


def cell_resources():
    """The Slurm resources of a training cell's job (ftbench.launch.slurm.job_resources), each per GPU count; its
    host memory, unless hardware.host_memory_per_rank_gb fixes it, per cell (cell_mem_mb).
    """
    runtime = runtime_min(config["limits"]["cell_timeout_s"])
    at = functools.cache(lambda gpus: job_resources(config["hardware"], gpus, runtime))
    resources = declared(
        {
            name: per_gpu_count(lambda gpus, name=name: at(gpus)[name])
            for name in at(CELL_GPUS[0])
        }
    )
    resources.update(cpu_job_resources(on_device=True))
    if "runtime" in resources:  # Slurm's -t follows the cell's own limit
        resources["runtime"] = per_model(
            lambda model: runtime_min(MODEL_TIMEOUTS[model])
        )
    return resources if "mem_mb" in resources else {**resources, "mem_mb": cell_mem_mb}


def per_model(value_of):
    """A train_cell attribute that depends on the cell's model alone: one value when every model has the
    same (Snakemake then evaluates nothing per job), else a function of the cell's model.
    """
    values = {name: value_of(name) for name in MODELS}
    if len(set(values.values())) == 1:
        return values[MODELS[0]]
    return per_job(lambda wildcards: values[wildcards.model])


MODEL_TIMEOUTS = {name: cell_timeout_s(config, name) for name in MODELS}


@per_job
def cell_mem_mb(wildcards):
    """What the cell's strategy holds on the host (ftbench.plan.host_memory), from the model's config.json: known
    once the model is prepared or downloaded (Snakemake asks again just before it submits the job).
    """
    cell = cell_of(wildcards)
    per_rank = cell_request_gb(config, cell, model_shape(config, cell.model))
    if per_rank is None:
        return TBDString()  # a dry run before the download: not known yet
    return mem_mb(config["hardware"], cell.gpus, per_rank)


def cell_threads():
    """Threads of a training cell's job: one rank per GPU, each with hardware.cpu_threads_per_rank."""
    return per_gpu_count(lambda gpus: gpus * config["hardware"]["cpu_threads_per_rank"])


def cpu_job_resources(on_device=False):
    """`hardware.cpu_partition` as the Slurm partition of a job that needs no GPU (for a job that runs on the
    cells' device, `on_device`, only when that device is the CPU); nothing when unset.
    """
    partition = config["hardware"].get("cpu_partition")
    needs_no_gpu = not on_device or config["hardware"]["device"] == "cpu"
    return {"slurm_partition": partition} if partition and needs_no_gpu else {}


def calibration_resources():
    """The Slurm resources of the calibration job: one GPU of the kind the cells run on."""
    return declared(
        {
            **job_resources(config["hardware"], 1, runtime_min(CALIBRATION_TIMEOUT_S)),
            **cpu_job_resources(on_device=True),
        }
    )


@per_job
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
    from ftbench.plan import estimate
    from ftbench.report.tables import rebuild

    rebuild(
        cells=list(CELLS),
        metrics_files=[metrics_file(cell_id) for cell_id in CELLS],
        pruned={cell.id: reason for cell, reason in PLAN.pruned},
        paths=REPORT,
        readme=config["report"]["readme"],
        run_name=RUN,
        pivots=config["report"]["pivots"],
        **estimate.summary_inputs(config, PLAN.every_cell),
    )
