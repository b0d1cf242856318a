# Shim for merge_repeats.
from ftbench import logs
from ftbench.files import atomic_write_json, read_json
from ftbench.report import repeats

logs.to_file(snakemake.log[0])
atomic_write_json(snakemake.output.metrics, repeats.merge([read_json(p) for p in snakemake.input.runs]))
