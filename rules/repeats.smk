# `repeats: N` (N > 1): every cell runs N times as separate jobs (runs/<cell>/repeat-<r>/); this merges them
# into the cell's metrics.json (median and spread). With one repeat train_cell writes it directly.
if REPEATS > 1:

    rule merge_repeats:
        input:
            runs=lambda wildcards: [
                f"{RUN_DIR}/runs/{CELL_DIR.format(**wildcards)}/repeat-{r}/{METRICS_FILE}"
                for r in range(REPEATS)
            ],
        output:
            metrics=f"{RUN_DIR}/runs/{CELL_DIR}/{METRICS_FILE}",
        log:
            f"logs/{RUN}/merge_repeats/{CELL_DIR}.log",
        localrule: True
        conda:
            "../envs/analysis.yaml"
        script:
            "../scripts/repeats.py"
