# Built sources (builtin data, builtin BPE, config models): each ends in a content-keyed directory plus
# manifest.json (ftbench.plan.builds). Hub and local sources are fetched by rules/download.smk.


rule prepare_dataset:
    output:
        manifest="resources/datasets/{build}/manifest.json",
    log:
        "logs/prepare_dataset/{build}.log",
    benchmark:
        "logs/benchmarks/prepare_dataset/{build}.tsv"
    wildcard_constraints:
        build=BUILDERS["prepare_dataset"].ids,
    conda:
        "../envs/hub.yaml"
    resources:
        **rule_resources.cpu_partition(config),
    params:
        **BUILDERS["prepare_dataset"].params,
    shell:
        BUILD_COMMAND


rule train_tokenizer:
    input:
        unpack(BUILDERS["train_tokenizer"].inputs),
    output:
        manifest="resources/tokenizers/{build}/manifest.json",
    log:
        "logs/train_tokenizer/{build}.log",
    benchmark:
        "logs/benchmarks/train_tokenizer/{build}.tsv"
    wildcard_constraints:
        build=BUILDERS["train_tokenizer"].ids,
    conda:
        TRAIN_ENV
    resources:
        **rule_resources.cpu_partition(config),
    params:
        **BUILDERS["train_tokenizer"].params,
    shell:
        BUILD_COMMAND


rule prepare_model:
    input:
        unpack(BUILDERS["prepare_model"].inputs),
    output:
        manifest="resources/models/{build}/manifest.json",
    log:
        "logs/prepare_model/{build}.log",
    benchmark:
        "logs/benchmarks/prepare_model/{build}.tsv"
    wildcard_constraints:
        build=BUILDERS["prepare_model"].ids,
    conda:
        TRAIN_ENV
    resources:
        **rule_resources.cpu_partition(config),
    params:
        **BUILDERS["prepare_model"].params,
    shell:
        BUILD_COMMAND
