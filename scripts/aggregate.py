# Shim for aggregate_metrics.
from ftbench import logs
from ftbench.cell import Cell
from ftbench.plan import estimate
from ftbench.report import aggregate

logs.to_file(snakemake.log[0])
params = snakemake.params
# estimated now, with every model's config.json in place; pruned cells too
cells = [Cell.from_dict(record) for record in [*params.cells, *(record for record, _ in params.pruned)]]
summary = aggregate.collect(
    params.cells,
    params.metrics_files,
    params.pruned,
    snakemake.input.calibration,
    **estimate.summary_inputs(params.estimate_config, cells),
    specs=params.specs,
)
aggregate.write(summary, parquet=snakemake.output.parquet, csv=snakemake.output.csv)
