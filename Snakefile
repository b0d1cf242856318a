# ftbench: LLM fine-tuning benchmark over models x strategies x GPU counts.
# The chain: sources -> token cache -> one training job per cell -> summary -> README tables.
import os

from snakemake.utils import min_version

min_version("9.0")

# conda envs (--sdm conda) import ftbench from this checkout: envs/install-ftbench.sh
os.environ["FTBENCH_SRC"] = os.path.join(workflow.basedir, "src")


envvars:
    "FTBENCH_SRC",


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/sources.smk"
include: "rules/tokcache.smk"
include: "rules/calibrate.smk"
include: "rules/train.smk"
include: "rules/repeats.smk"
include: "rules/aggregate.smk"
include: "rules/charts.smk"
include: "rules/report.smk"
include: "rules/compare.smk"
include: "rules/preview.smk"


rule all:
    default_target: True
    input:
        all_targets(),
