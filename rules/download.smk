# Hub (hf:) and local (local:) sources, linked into content-keyed resources/ directories with a manifest.
# They run on the submitting host (cluster compute nodes often have no internet); every later rule reads
# only resources/.


rule download_dataset:
    input:
        unpack(BUILDERS["download_dataset"].inputs),
    output:
        manifest="resources/datasets/{build}/manifest.json",
    log:
        "logs/download_dataset/{build}.log",
    benchmark:
        "logs/benchmarks/download_dataset/{build}.tsv"
    wildcard_constraints:
        build=BUILDERS["download_dataset"].ids,
    localrule: True
    conda:
        "../envs/hub.yaml"
    params:
        **BUILDERS["download_dataset"].params,
    shell:
        BUILD_COMMAND


rule download_tokenizer:
    input:
        unpack(BUILDERS["download_tokenizer"].inputs),
    output:
        manifest="resources/tokenizers/{build}/manifest.json",
    log:
        "logs/download_tokenizer/{build}.log",
    benchmark:
        "logs/benchmarks/download_tokenizer/{build}.tsv"
    wildcard_constraints:
        build=BUILDERS["download_tokenizer"].ids,
    localrule: True
    conda:
        "../envs/hub.yaml"
    params:
        **BUILDERS["download_tokenizer"].params,
    shell:
        BUILD_COMMAND


rule download_model:
    input:
        unpack(BUILDERS["download_model"].inputs),
    output:
        manifest="resources/models/{build}/manifest.json",
    log:
        "logs/download_model/{build}.log",
    benchmark:
        "logs/benchmarks/download_model/{build}.tsv"
    wildcard_constraints:
        build=BUILDERS["download_model"].ids,
    localrule: True
    conda:
        "../envs/hub.yaml"
    params:
        **BUILDERS["download_model"].params,
    shell:
        BUILD_COMMAND
