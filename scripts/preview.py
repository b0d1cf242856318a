# Shim for preview: print what the sweep asks of the cluster (nothing is submitted).
from ftbench import preview

print(
    preview.render(
        snakemake.params.selected,
        snakemake.params.pruned,
        snakemake.params.hardware,
        snakemake.params.timeout_s,
        snakemake.params.run_dir,
    )
)
