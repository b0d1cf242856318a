# One packed token cache per (dataset, tokenizer, seq_len), shared by all models using the tokenizer.


rule build_token_cache:
    input:
        dataset="resources/datasets/{dataset}/manifest.json",
        tokenizer="resources/tokenizers/{tokenizer}/manifest.json",
    output:
        manifest="resources/tokcache/{dataset}/{tokenizer}/seq{seq}/manifest.json",
    log:
        "logs/build_token_cache/{dataset}/{tokenizer}/seq{seq}.log",
    benchmark:
        "logs/benchmarks/build_token_cache/{dataset}/{tokenizer}/seq{seq}.tsv"
    conda:
        TRAIN_ENV
    resources:
        **rule_resources.cpu_partition(config),
    params:
        render=lambda wildcards: RENDER,  # braces are not wildcards
        eval_fraction=config["dataset"]["eval_fraction"],
        seed=config["seed"],
    script:
        "../scripts/tokcache.py"
