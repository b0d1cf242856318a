# Shim for the download rules (download_dataset, download_tokenizer, download_model): one ftbench call each.
from pathlib import Path

from ftbench import logs
from ftbench.data import download

logs.to_file(snakemake.log[0])
out_dir = Path(snakemake.output.manifest).parent
p = snakemake.params
calls = {
    "download_dataset": lambda: download.download_dataset(p.source, out_dir, p.files, p.split, p.sample_by),
    "download_tokenizer": lambda: download.download_tokenizer(p.source, out_dir),
    "download_model": lambda: download.download_model(p.model, Path(snakemake.input.tokenizer).parent, out_dir),
}
calls[snakemake.rule]()
