# One job per matrix cell: torchrun starts one process per GPU (a gloo process per "GPU" on CPU).


rule train_cell:
    input:
        unpack(train_inputs),
    output:
        metrics=f"{RUN_DIR}/runs/{CELL_DIR}/metrics.json",
    log:
        f"logs/{RUN}/train_cell/{CELL_DIR}.log",
    benchmark:
        f"logs/{RUN}/benchmarks/train_cell/{CELL_DIR}.tsv"
    conda:
        "../envs/train.yaml"
    threads: lambda wildcards: int(wildcards.gpus) * config["hardware"]["cpu_threads_per_rank"]
    resources:
        # the local profile caps this at 1 so timings are never measured on a shared CPU
        train_jobs=1,
    params:
        spec=train_spec,
        model_dir=lambda wildcards, input: os.path.dirname(input.model),
        cache_dir=lambda wildcards, input: os.path.dirname(input.cache),
        extensions_dir=EXTENSIONS_DIR,
    shell:
        # DeepSpeed JIT-compiles its ops once into this cache; every later cell reuses them
        "TORCH_EXTENSIONS_DIR={params.extensions_dir} torchrun --standalone --nproc-per-node {wildcards.gpus} -m ftbench.train_cell"
        " --spec {params.spec:q} --model {params.model_dir} --cache {params.cache_dir}"
        " --out {output.metrics} > {log} 2>&1"
