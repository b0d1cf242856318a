"""Bad config is refused by `snakemake -n` itself, naming the key path and what is allowed, before any job
runs, and nothing already computed is touched."""

import re

import pytest
import yaml

pytestmark = pytest.mark.e2e


def _set(path, value):
    """A mutation setting the key at `path` (a list of keys and indices) to `value`."""

    def mutate(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _drop(path):
    def mutate(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _rename_top(old, new):
    return lambda c: c.update({new: c.pop(old)})


CASES = {
    # unknown keys at any level, with the nearest valid key
    "typo in steps": (_set(["steps", "mesure"], 3), r"steps\.mesure: unknown key; did you mean 'measure'\?"),
    "typo at the top level": (_rename_top("models", "modles"), r"modles: unknown key; did you mean 'models'\?"),
    "typo in a model": (
        _set(["models", 0, "tokeniser"], "builtin:bpe-512"),
        r"models\[0\]\.tokeniser: unknown key; did you mean 'tokenizer'\?",
    ),
    "typo in an architecture": (
        _set(["models", 0, "architecture", "num_layer"], 2),
        r"models\[0\]\.architecture\.num_layer: unknown key; did you mean 'num_layers'\?",
    ),
    "typo in a pivot": (
        _set(["report", "pivots", 0, "colums"], "gpus"),
        r"report\.pivots\[0\]\.colums: unknown key; did you mean 'columns'\?",
    ),
    # the matrix's values
    "unknown strategy": (
        _set(["matrix", "strategies"], ["ddp", "ddpp"]),
        r"matrix\.strategies\[1\]: 'ddpp' is not allowed \(did you mean 'ddp'\?\); use one of ddp, fsdp",
    ),
    "unknown precision": (
        _set(["matrix", "precision"], ["fp12"]),
        r"matrix\.precision\[0\]: 'fp12' is not allowed.*use one of fp32, bf16, fp16, fp8",
    ),
    "unknown method": (
        _set(["matrix", "method"], ["qlora"]),
        r"matrix\.method\[0\]: 'qlora' is not allowed.*use one of full, lora",
    ),
    "zero GPUs": (_set(["matrix", "gpus"], [0]), r"matrix\.gpus\[0\]: 0 is out of range; it must be at least 1"),
    "negative GPUs": (
        _set(["matrix", "gpus"], [1, -2]),
        r"matrix\.gpus\[1\]: -2 is out of range; it must be at least 1",
    ),
    "fractional GPUs": (_set(["matrix", "gpus"], [1.5]), r"matrix\.gpus\[0\]: 1\.5 is a number, it must be an integer"),
    "quoted GPUs": (
        _set(["matrix", "gpus"], ["2"]),
        r"matrix\.gpus\[0\]: '2' is a string, it must be an integer \(drop the quotes\)",
    ),
    "GPUs as a float": (_set(["matrix", "gpus"], [2.0]), r"matrix\.gpus\[0\]: 2\.0 is a number, it must be an integer"),
    "GPUs listed twice": (_set(["matrix", "gpus"], [1, 1]), r"matrix\.gpus: \[1, 1\] lists a value twice"),
    "GPUs not filling whole nodes": (
        lambda c: c.update(hardware={"gpus_per_node": 2}) or c["matrix"].update(gpus=[1, 3]),
        r"matrix\.gpus\[1\]: 3 GPUs do not fill whole nodes of hardware\.gpus_per_node=2",
    ),
    "seq_len 0": (_set(["matrix", "seq_len"], [0]), r"matrix\.seq_len\[0\]: 0 is out of range; it must be at least 8"),
    "seq_len above max_positions": (
        _set(["matrix", "seq_len"], [64, 256]),
        r"matrix\.seq_len\[1\]: 256 exceeds models\[0\]\.architecture\.max_positions=128",
    ),
    "empty strategies": (_set(["matrix", "strategies"], []), r"matrix\.strategies: needs at least 1 item\(s\), got 0"),
    "empty matrix after pruning": (
        lambda c: c["matrix"].update(strategies=["pipeline"], gpus=[1]),
        r"matrix: every one of the 1 cells was pruned, nothing to run \(pipeline needs at least 2 stages",
    ),
    # batches and steps
    "batch size 0": (_set(["batch_size_per_gpu"], 0), r"batch_size_per_gpu: 0 is out of range; it must be at least 1"),
    "global batch does not divide": (
        _set(["global_batch_size"], 6),
        r"global_batch_size: 6 .* is not a multiple of batch_size_per_gpu x data-parallel ranks = 2 x 2",
    ),
    "per-model global batch does not divide": (
        _set(["models", 0, "global_batch_size"], 3),
        r"models\[0\]\.global_batch_size: 3 for model 'tiny-llama'",
    ),
    "warm-up steps 0": (_set(["steps", "warmup"], 0), r"steps\.warmup: 0 is out of range; it must be at least 1"),
    "measured steps 0": (_set(["steps", "measure"], 0), r"steps\.measure: 0 is out of range; it must be at least 1"),
    "steps missing": (_drop(["steps"]), r"steps: missing; the top level needs run_name, dataset, models"),
    # models
    "model without a source": (
        _drop(["models", 0, "source"]),
        r"models\[0\]\.source: missing; models\[0\] needs name, source",
    ),
    "hf repo id with spaces": (
        _set(["models", 0, "source"], "hf:not a repo"),
        r"models\[0\]\.source: 'hf:not a repo' is not a model source \(config:llama, config:gpt2, hf:",
    ),
    "hf repo id with three parts": (
        _set(["models", 0, "source"], "hf:a/b/c"),
        r"models\[0\]\.source: 'hf:a/b/c' is not a model source .*repo id 'a/b/c' has 3 parts",
    ),
    "hf empty revision": (
        _set(["models", 0, "source"], "hf:acme/llama@"),
        r"models\[0\]\.source: 'hf:acme/llama@' is not a model source .*revision '' after '@' is empty",
    ),
    "unknown model source kind": (
        _set(["models", 0, "source"], "config:mistral"),
        r"models\[0\]\.source: 'config:mistral' is not a model source",
    ),
    "local model that does not exist": (
        lambda c: c["models"].append({"name": "mine", "source": "local:models/mine"}),
        r"models\[1\]\.source \(mine\): 'local:models/mine': .*models/mine does not exist",
    ),
    "duplicate model names": (
        lambda c: c["models"].append(dict(c["models"][0])),
        r"models\[1\]\.name: duplicate model name 'tiny-llama'; names must be unique",
    ),
    "model name with a slash": (
        _set(["models", 0, "name"], "tiny/llama"),
        r"models\[0\]\.name: 'tiny/llama' is not a file-system safe name",
    ),
    "architecture on a hub model": (
        _set(["models", 0, "source"], "hf:acme/llama"),
        r"models\[0\]\.architecture \(tiny-llama\): only config",
    ),
    "heads do not divide the width": (
        _set(["models", 0, "architecture", "num_heads"], 3),
        r"models\[0\]\.architecture \(tiny-llama\): hidden_size 32 is not divisible by num_heads 3",
    ),
    # dataset
    "unknown dataset source": (
        _set(["dataset", "source"], "s3://bucket/tickets.csv"),
        r"dataset\.source: 's3://bucket/tickets.csv' is not a dataset source \(builtin:customer_support, hf:",
    ),
    "local dataset that does not exist": (
        _set(["dataset", "source"], "local:/nonexistent/tickets.jsonl"),
        r"dataset\.source: 'local:/nonexistent/tickets.jsonl': /nonexistent/tickets.jsonl does not exist",
    ),
    "eval fraction 1": (
        _set(["dataset", "eval_fraction"], 1),
        r"dataset\.eval_fraction: 1 is out of range; it must be below 1",
    ),
    # report, select, other sections
    "pivot naming an unknown column": (
        _set(["report", "pivots", 0, "value"], "tokens"),
        r"report\.pivots\[0\]\.value: 'tokens' is not a summary column; use one of",
    ),
    "select pattern matching nothing": (
        _set(["select"], ["tiny-llama/ddp/*", "tiny-llama/dpp/*"]),
        r"select\[1\]: 'tiny-llama/dpp/\*' matches none of the 7 cells",
    ),
    "select as a string": (_set(["select"], "tiny-llama/*"), r"select: 'tiny-llama/\*' is a string, it must be a list"),
    "empty section": (_set(["optimizer"], None), r"optimizer: None is empty \(null\), it must be a mapping"),
    "unknown device": (
        _set(["hardware"], {"device": "gpu"}),
        r"hardware\.device: 'gpu' is not allowed.*use one of auto, cpu, cuda",
    ),
    "unknown pipeline schedule": (
        _set(["options"], {"pipeline": {"schedule": "1f1b"}}),
        r"options\.pipeline\.schedule: '1f1b' is not allowed \(did you mean '1F1B'\?\)",
    ),
}


def _computed(tmp_path, checksums):
    """A results/ tree and README as a finished run leaves them: a bad config must not touch a byte."""
    cell = tmp_path / "results" / "ci" / "runs" / "tiny-llama" / "ddp" / "1gpu" / "full-fp32-bs2-seq64"
    cell.mkdir(parents=True)
    (cell / "metrics.json").write_text('{"status": "ok", "train_tokens_per_s": 123.0}\n')
    (tmp_path / "results" / "ci" / "summary.csv").write_text("cell_id,status\nx,ok\n")
    (tmp_path / "results" / "ci" / "tables.md").write_text("| a |\n")
    (tmp_path / "README.md").write_text("# r\n\n<!-- ftbench:tables -->\nold tables\n")
    return checksums(tmp_path)


def test_there_are_enough_cases():
    assert len(CASES) >= 22


@pytest.mark.parametrize(("mutate", "message"), list(CASES.values()), ids=list(CASES))
def test_bad_config_stops_the_dry_run_with_a_message(
    tmp_path, raw_test_config, run_snakemake, mutate, message, checksums
):
    mutate(raw_test_config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw_test_config))
    before = _computed(tmp_path, checksums)
    proc = run_snakemake(tmp_path, "-n", check=False)
    output = proc.stderr + proc.stdout
    assert proc.returncode != 0
    assert "ConfigError" in output, output[-2000:]
    assert re.search(message, output), output[-2000:]
    assert checksums(tmp_path) == before
    assert not (tmp_path / "resources").exists() and not (tmp_path / ".snakemake" / "metadata").exists()
