"""Bad config is refused by `snakemake -n` itself, naming the key, before any job runs."""

import re

import pytest
import yaml

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["steps"].update(mesure=3), "'mesure' was unexpected"),
        (lambda c: c["matrix"].update(strategies=["ddpp"]), "'ddpp' is not one of"),
        (lambda c: c["matrix"].update(gpus=[0]), "0 is less than the minimum of 1"),
        (lambda c: c.update(batch_size_per_gpu=0), "0 is less than the minimum of 1"),
        (lambda c: c.update(global_batch_size=6), "global_batch_size: 6 .* is not a multiple"),
        (lambda c: c["models"].append(dict(c["models"][0])), "duplicate model name 'tiny-llama'"),
        (lambda c: c["models"][0].pop("source"), "'source' is a required property"),
        (
            lambda c: c["dataset"].update(source="local:/nonexistent/tickets.jsonl"),
            "(?s)download_dataset.*tickets.jsonl",
        ),
        (
            lambda c: c["models"][0].update(source="hf:acme/llama"),
            r"models\[0\].architecture \(tiny-llama\): only config",
        ),
        (
            lambda c: c["report"]["pivots"][0].update(value="tokens"),
            r"report.pivots\[0\].value: 'tokens' is not a summary column",
        ),
    ],
)
def test_bad_config_stops_the_dry_run_with_a_message(tmp_path, raw_test_config, run_snakemake, mutate, message):
    mutate(raw_test_config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw_test_config))
    (tmp_path / "README.md").write_text("# r\n")
    proc = run_snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert re.search(message, proc.stderr + proc.stdout), proc.stderr[-2000:]
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()
