# One packed token cache per (dataset, tokenizer, seq_len) build, shared by all models using the tokenizer.


rule build_token_cache:
    input:
        unpack(BUILDERS["build_token_cache"].inputs),
    output:
        manifest="resources/tokcache/{build}/manifest.json",
    log:
        "logs/build_token_cache/{build}.log",
    benchmark:
        "logs/benchmarks/build_token_cache/{build}.tsv"
    wildcard_constraints:
        build=BUILDERS["build_token_cache"].ids,
    conda:
        TRAIN_ENV
    resources:
        **rule_resources.cpu_partition(config),
    params:
        **BUILDERS["build_token_cache"].params,
    shell:
        BUILD_COMMAND
