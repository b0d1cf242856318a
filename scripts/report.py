# Shim for render_report.
from ftbench import logs
from ftbench.report import tables

logs.to_file(snakemake.log[0])
tables.publish(
    summary_csv=snakemake.input.summary,
    docs_summary=snakemake.output.docs_summary,
    readme=snakemake.input.readme,
    tables_md=snakemake.output.tables,
    run_name=snakemake.params.run_name,
    charts_dir=snakemake.params.charts_dir,
    pivots=snakemake.params.pivots,
)
