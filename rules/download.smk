# Hub (hf:) and local (local:) sources, linked into resources/ with a manifest. They run on the submitting
# host (cluster compute nodes often have no internet); every later rule reads only resources/.


rule download_dataset:
    input:
        local_input(config["dataset"]["source"]),
    output:
        manifest="resources/datasets/{dataset}/manifest.json",
    log:
        "logs/download_dataset/{dataset}.log",
    benchmark:
        "logs/benchmarks/download_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=DOWNLOADED_DATASET,
    localrule: True
    conda:
        "../envs/hub.yaml"
    params:
        source=config["dataset"]["source"],
        files=config["dataset"].get("files"),
        split=config["dataset"].get("split"),
        sample_by=config["dataset"]["sample_by"],
    script:
        "../scripts/download.py"


rule download_tokenizer:
    input:
        tokenizer_download_inputs,
    output:
        manifest="resources/tokenizers/{tokenizer}/manifest.json",
    log:
        "logs/download_tokenizer/{tokenizer}.log",
    benchmark:
        "logs/benchmarks/download_tokenizer/{tokenizer}.tsv"
    wildcard_constraints:
        tokenizer=r"(hf|local)--[^/]+",
    localrule: True
    conda:
        "../envs/hub.yaml"
    params:
        source=tokenizer_source,
    script:
        "../scripts/download.py"


rule download_model:
    input:
        unpack(model_download_inputs),
    output:
        manifest="resources/models/{model}/manifest.json",
    log:
        "logs/download_model/{model}.log",
    benchmark:
        "logs/benchmarks/download_model/{model}.tsv"
    wildcard_constraints:
        model=DOWNLOADED_MODELS,
    localrule: True
    conda:
        "../envs/hub.yaml"
    params:
        model=lambda wildcards: model_build_config(config, wildcards.model),
    script:
        "../scripts/download.py"
