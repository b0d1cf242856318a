# Built sources (builtin data, builtin BPE, config models): each rule ends in a directory plus
# manifest.json (the declared output). Hub and local sources are fetched by rules/download.smk.


rule prepare_dataset:
    output:
        manifest="resources/datasets/{dataset}/manifest.json",
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "logs/benchmarks/prepare_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=BUILT_DATASET,
    conda:
        "../envs/hub.yaml"
    resources:
        **rule_resources.cpu_partition(config),
    params:
        source=config["dataset"]["source"],
        num_rows=config["dataset"]["num_rows"],
        seed=config["seed"],
    script:
        "../scripts/sources.py"


rule train_tokenizer:
    input:
        dataset=f"resources/datasets/{DATASET}/manifest.json",
    output:
        manifest="resources/tokenizers/{tokenizer}/manifest.json",
    log:
        "logs/train_tokenizer/{tokenizer}.log",
    benchmark:
        "logs/benchmarks/train_tokenizer/{tokenizer}.tsv"
    wildcard_constraints:
        tokenizer=r"bpe-\d+-[^/]+",
    conda:
        TRAIN_ENV
    resources:
        **rule_resources.cpu_partition(config),
    params:
        source=tokenizer_source,
        render=lambda wildcards: RENDER,  # braces are not wildcards
    script:
        "../scripts/sources.py"


rule prepare_model:
    input:
        tokenizer=model_tokenizer_manifest,
    output:
        manifest="resources/models/{model}/manifest.json",
    log:
        "logs/prepare_model/{model}.log",
    benchmark:
        "logs/benchmarks/prepare_model/{model}.tsv"
    wildcard_constraints:
        model=BUILT_MODELS,
    conda:
        TRAIN_ENV
    resources:
        **rule_resources.cpu_partition(config),
    params:
        model=lambda wildcards: model_build_config(config, wildcards.model),
        seed=config["seed"],
    script:
        "../scripts/sources.py"
