

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
        cells=list(CELLS),
        # every cell's row: the selected ones are inputs, the others are read as they are on disk
        metrics_files=[metrics_file(cell_id) for cell_id in CELLS],
        pruned={cell.id: reason for cell, reason in PLAN.pruned},
        # every cell, pruned ones too, for its memory estimate
        cell_specs=[cell.to_dict() for cell in PLAN.every_cell],
        prices=config["cost"]["price_per_gpu_hour"],
    script:
        "../scripts/aggregate.py"
