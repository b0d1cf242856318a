# Shim for the source rules (prepare_dataset, train_tokenizer, prepare_model): one ftbench call each.
from pathlib import Path

from ftbench import logs
from ftbench.data import sources

logs.to_file(snakemake.log[0])
out_dir = Path(snakemake.output.manifest).parent
p = snakemake.params
calls = {
    "prepare_dataset": lambda: sources.prepare_dataset(p.source, out_dir, p.num_rows, p.seed),
    "train_tokenizer": lambda: sources.train_tokenizer(
        p.source, Path(snakemake.input.dataset).parent, sources.Render(**p.render), out_dir
    ),
    "prepare_model": lambda: sources.prepare_model(p.model, Path(snakemake.input.tokenizer).parent, out_dir, p.seed),
}
calls[snakemake.rule]()
