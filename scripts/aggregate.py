# Shim for aggregate_metrics.
from ftbench import logs
from ftbench.cell import Cell
from ftbench.plan import estimate
from ftbench.report import aggregate

logs.to_file(snakemake.log[0])
# estimated now, with every model's config.json in place
cells = [Cell(**spec) for spec in snakemake.params.cell_specs]
summary = aggregate.collect(
    snakemake.params.cells,
    snakemake.params.metrics_files,
    snakemake.params.pruned,
    snakemake.input.calibration,
    **estimate.summary_inputs(snakemake.config, cells),
)
aggregate.write(summary, parquet=snakemake.output.parquet, csv=snakemake.output.csv)
