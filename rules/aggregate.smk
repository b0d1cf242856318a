

rule aggregate_metrics:
    input:
        metrics=[f"{RUN_DIR}/runs/{cell_id}/metrics.json" for cell_id in CELLS],
        calibration=f"{RUN_DIR}/calibration.json",
    output:
        parquet=f"{RUN_DIR}/summary.parquet",
        csv=f"{RUN_DIR}/summary.csv",
    log:
        f"logs/{RUN}/aggregate_metrics.log",
    benchmark:
        f"logs/{RUN}/benchmarks/aggregate_metrics.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        cells=list(CELLS),
        pruned={cell.id: reason for cell, reason in PLAN.pruned},
    script:
        "../scripts/aggregate.py"
