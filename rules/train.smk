# One job per matrix cell: ftbench.launch runs torchrun (one process per GPU; a gloo process per "GPU" on
# CPU) and turns OOM and the wall-time limit into results; other failures fail the job.


rule train_cell:
    input:
        model=train_input(0),
        cache=train_input(1),
    output:
        metrics=f"{RUN_DIR}/runs/{TRAIN_DIR}/{METRICS_FILE}",
    log:
        f"logs/{RUN}/train_cell/{TRAIN_DIR}.log",
    benchmark:
        f"logs/{RUN}/benchmarks/train_cell/{TRAIN_DIR}.tsv"
    conda:
        TRAIN_ENV
    threads: per_job_value(rule_resources.train_threads(config, PLAN.cells))
    resources:
        # Slurm (profiles/slurm): nodes x GPUs per node from the cell's GPU count, one task per node; the
        # local profile caps train_jobs at 1 so timings are never measured on a shared CPU
        **cell_resources(),
    params:
        spec=train_spec,
        model_dir=subpath(input.model, parent=True),
        cache_dir=subpath(input.cache, parent=True),
        extensions_dir=EXTENSIONS_DIR,
    shell:
        # DeepSpeed JIT-compiles its ops once into this cache; every later cell reuses them
        "TORCH_EXTENSIONS_DIR={params.extensions_dir} python -m ftbench.launch --gpus {wildcards.gpus}"
        " --nodes {resources.nodes}"
        " --timeout-s {resources.cell_timeout_s} --cpu-memory-mb {resources.cpu_mem_per_rank_mb}"
        " --log {log} -- --spec {params.spec:q} --model {params.model_dir} --cache {params.cache_dir}"
        " --out {output.metrics} > {log} 2>&1"
