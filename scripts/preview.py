# Shim for preview: print what the sweep asks of the cluster (nothing is submitted) and keep it in the log.
from pathlib import Path

from ftbench.plan import estimate, preview

text = preview.render(
    snakemake.params.selected,
    snakemake.params.pruned,
    snakemake.params.hardware,
    snakemake.params.timeout_s,
    snakemake.params.run_dir,
    snakemake.params.repeats,
    snakemake.params.model_timeouts,
    estimate.cell_estimates(snakemake.params.estimate_config, snakemake.params.selected),
    estimate.device_capacity_gb(snakemake.params.estimate_config),
)
Path(snakemake.log[0]).write_text(text)
print(text)
