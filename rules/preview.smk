# `snakemake preview`: the cells, nodes and GPU-hours a sweep asks for, before anything is submitted, and
# which cells run and why: it asks Snakemake (`--summary` under this invocation's config).
# No output: it runs each time it is asked for, on the submitting host, and is never part of `all`.
# The table is printed and kept in its log.
rule preview:
    log:
        f"logs/{RUN}/preview.md",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        selected=PLAN.selected,
        pruned=PLAN.pruned,
        hardware=config["hardware"],
        timeout_s=config["limits"]["cell_timeout_s"],
        model_timeouts=MODEL_TIMEOUTS,
        run_dir=RUN_DIR,
        train_logs=f"logs/{RUN}/train_cell",
        snakefile=workflow.main_snakefile,
        snakemake_python=sys.executable,
        results=[metrics_file(cell.id) for cell in PLAN.selected],
        # a function: the run's settings are known once its DAG is built, not while the Snakefile is read
        options=lambda wildcards: invocation_options(
            workflow.deployment_settings.deployment_method, workflow.rerun_triggers
        ),
        repeats=REPEATS,
        estimate_config=PREVIEW_CONFIG,
    script:
        "../scripts/preview.py"
