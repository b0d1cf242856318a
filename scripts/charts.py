# Shim for render_charts.
import polars as pl

from ftbench import logs
from ftbench.report import charts

logs.to_file(snakemake.log[0])
frame = pl.read_csv(snakemake.input.summary, infer_schema_length=None)
charts.render_model(frame, snakemake.wildcards.model, snakemake.params.out_dir)
