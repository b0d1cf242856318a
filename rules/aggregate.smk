

rule aggregate_metrics:
    input:
        metrics=[metrics_file(cell_id) for cell_id in SELECTED],
        calibration=REPORT.calibration,
    output:
        parquet=REPORT.parquet,
        csv=REPORT.csv,
    log:
        f"logs/{RUN}/aggregate_metrics.log",
    benchmark:
        f"logs/{RUN}/benchmarks/aggregate_metrics.tsv"
    localrule: True  # seconds of work on the submitting host; never queued
    conda:
        "../envs/analysis.yaml"
    params:
        # every cell's row: the selected ones are inputs, the others are read as they are on disk
        **REPORT_CELLS,
        # each cell's memory estimate (pruned ones too) and cost
        estimate_config=ESTIMATE_CONFIG,
    script:
        "../scripts/aggregate.py"
