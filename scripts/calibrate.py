# Shim for calibrate_device.
from ftbench import calibrate, logs

logs.to_file(snakemake.log[0])
calibrate.calibrate(snakemake.params.device, snakemake.params.threads, snakemake.output.calibration)
