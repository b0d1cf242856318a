# Shim for calibrate_device.
from ftbench import logs
from ftbench.train import calibrate

logs.to_file(snakemake.log[0])
calibrate.calibrate(
    snakemake.params.device,
    snakemake.params.threads,
    snakemake.output.calibration,
    precisions=snakemake.params.precisions,
)
