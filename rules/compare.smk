# `snakemake compare`: this run's summary against compare.reference (another run_name or a summary.csv),
# ratios per cell with changes beyond compare.threshold flagged; with compare.gate a regression fails it.
rule compare:
    input:
        summary=REPORT.csv,
        reference=compare_reference,
    output:
        f"{RUN_DIR}/compare.md",
    log:
        f"logs/{RUN}/compare.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        threshold=config["compare"]["threshold"],
        gate="--gate" if config["compare"]["gate"] else "",
    shell:
        "python -m ftbench.report.compare {input.summary} {input.reference} --threshold {params.threshold}"
        " {params.gate} --out {output} > {log} 2>&1"
