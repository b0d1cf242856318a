# Shim for aggregate_metrics.
from ftbench import logs
from ftbench.report import aggregate

logs.to_file(snakemake.log[0])
summary = aggregate.collect(
    snakemake.params.cells, snakemake.params.metrics_files, snakemake.params.pruned, snakemake.input.calibration
)
aggregate.write(summary, parquet=snakemake.output.parquet, csv=snakemake.output.csv)
