# Shim for preview: print what the sweep asks of the cluster (nothing is submitted) and keep it in the log.
from pathlib import Path

from ftbench.plan import estimate, preview

p = snakemake.params
summary = preview.ask_snakemake(p.snakemake_python, p.snakefile, snakemake.config, p.results, p.options)
text = preview.render(
    p.selected,
    p.pruned,
    p.hardware,
    p.timeout_s,
    preview.cell_states(summary, p.run_dir, p.train_logs),
    p.repeats,
    p.model_timeouts,
    estimate.cell_estimates(p.estimate_config, p.selected),
    estimate.device_capacity_gb(p.estimate_config),
)
Path(snakemake.log[0]).write_text(text)
print(text)
