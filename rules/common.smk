# Validation, wildcard constraints and the input/param functions: the only .smk file with `def`s.
import functools
import inspect
import json
import os
import sys

from snakemake.common import overwrite_function_params
from snakemake.common.tbdstring import TBDString
from snakemake.logging import logger
from snakemake.utils import validate

from ftbench import precision
from ftbench.cell import CELL_PATTERN, OPTIONS_WILDCARD
from ftbench.files import MANIFEST
from ftbench.plan import builds, estimate, legacy
from ftbench.plan.config_check import check_config, check_local_sources
from ftbench.plan.model_shape import model_shape
from ftbench.plan.preview import invocation_options
from ftbench.plan.matrix import check_pivots, job_spec, plan
from ftbench.launch import resources as rule_resources
from ftbench.launch.resources import ByWildcard
from ftbench.launch.slurm import refuse_array_jobs
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
MODELS = [model["name"] for model in config["models"]]
RUN = config["run_name"]
RUN_DIR = f"results/{RUN}"
# the cell id (ftbench.cell's grammar): its fixed part, then the optional segments of non-default fields
CELL_DIR = f"{CELL_PATTERN}{{options}}"
REPEATS = config["repeats"]
# one training job: the cell itself, or with repeats one of its runs (rules/repeats.smk merges them)
TRAIN_DIR = os.path.join(CELL_DIR, "repeat-{repeat}") if REPEATS > 1 else CELL_DIR
EXTENSIONS_DIR = "resources/torch_extensions"
# the report chain's files (summary, tables, charts, calibration), for the rules and onerror alike
REPORT = ReportPaths.of_run(RUN, config["report"]["docs_dir"])
CHARTS_DIR = REPORT.charts_dir
MODEL_TIMEOUTS = rule_resources.model_timeouts(config)
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


def metrics_file(cell_id):
    return f"{RUN_DIR}/runs/{cell_id}/{METRICS_FILE}"


# the resource directories the cells read, keyed by content (ftbench.plan.builds), and each builder rule's view
BUILDERS = builds.builder_rules(builds.Builds.of(config, config["matrix"]["seq_len"]))
BUILD_COMMAND = builds.BUILD_COMMAND
# each planned cell's job spec, built once: the train rule's params.spec, and what the summary marks stale by
SPECS = {cell.id: job_spec(config, cell) for cell in PLAN.cells}
# what the summary lists: every planned cell's record and metrics file, and the pruned cells with their reasons
REPORT_CELLS = {
    "cells": [cell.to_dict() for cell in PLAN.cells],
    "metrics_files": [metrics_file(cell.id) for cell in PLAN.cells],
    "pruned": [(cell.to_dict(), reason) for cell, reason in PLAN.pruned],
    # what each cell would measure now: a result measured under another spec is marked stale
    "specs": list(SPECS.values()),
}
# what the summary's memory estimate and cost columns read of the config; the preview's adds the capacity
ESTIMATE_CONFIG = estimate.config_read(config)
PREVIEW_CONFIG = estimate.config_read(config, capacity=True)


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


def per_job(func):
    """A function Snakemake calls once per job. Snakemake asks for its signature (which arguments it takes)
    twice on every call; giving it once here, through the hook Snakemake's own subpath() uses, saves that
    work on every job of a large matrix.
    """
    overwrite_function_params(func, inspect.signature(func).parameters)
    return func


def per_job_value(value):
    """A value from ftbench.launch.resources as Snakemake takes it: a ByWildcard becomes a function of the
    job's wildcards, anything else stays as it is."""
    return (
        per_job(lambda wildcards: value.of(wildcards))
        if isinstance(value, ByWildcard)
        else value
    )


@functools.cache
def train_dirs(model, seq):
    """A training job's model and token cache directories: those from before content keys where they hold
    its builds (so that a finished cell's recorded inputs stay as they were), else the content-keyed ones.
    """
    model_build, cache = builds.model_build(config, model), builds.cache_build(
        config, model, int(seq)
    )
    adopted = legacy.adopted_inputs(config, model_build, cache)
    return adopted or (model_build.directory(), cache.directory())


def train_input(index):
    """train_cell's model (0) or token cache (1) manifest."""
    return per_job(
        lambda wildcards: os.path.join(
            train_dirs(wildcards.model, wildcards.seq)[index], MANIFEST
        )
    )


@per_job
def cell_mem_mb(wildcards):
    """What the cell's strategy holds on the host, from the model's config.json: known once the model is
    prepared or downloaded (Snakemake asks again just before it submits the job).
    """
    cell = cell_of(wildcards)
    mb = rule_resources.cell_mem_mb(config, cell, model_shape(config, cell.model))
    # None: a dry run before the download, the model's shape is not known yet
    return TBDString() if mb is None else mb


def cell_resources():
    """The Slurm and local resources of a training cell's job (ftbench.launch.resources.train_cell)."""
    values = rule_resources.train_cell(config, PLAN.cells)
    return {
        name: cell_mem_mb if value == rule_resources.PER_CELL else per_job_value(value)
        for name, value in values.items()
    }


@per_job
def train_spec(wildcards):
    return json.dumps(SPECS[CELL_DIR.format(**wildcards)], sort_keys=True)


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
    from ftbench.report.tables import rebuild

    rebuild(
        **REPORT_CELLS,
        paths=REPORT,
        readme=config["report"]["readme"],
        run_name=RUN,
        pivots=config["report"]["pivots"],
        **estimate.summary_inputs(ESTIMATE_CONFIG, PLAN.every_cell),
    )
