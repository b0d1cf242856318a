# Shim for build_token_cache.
from pathlib import Path

from ftbench import logs
from ftbench.data import tokcache
from ftbench.data.sources import Render

logs.to_file(snakemake.log[0])
tokcache.build(
    dataset_dir=Path(snakemake.input.dataset).parent,
    tokenizer_dir=Path(snakemake.input.tokenizer).parent,
    out_dir=Path(snakemake.output.manifest).parent,
    template=Render(**snakemake.params.render),
    seq_len=int(snakemake.wildcards.seq),
    eval_fraction=snakemake.params.eval_fraction,
    seed=snakemake.params.seed,
)
