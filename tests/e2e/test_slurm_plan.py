"""What a sweep asks Slurm for, read off Snakemake's own dry-run plan (no cluster needed)."""

import re
import shutil

import pytest

pytestmark = pytest.mark.e2e


def planned_resources(output: str) -> dict[str, set[str]]:
    """{rule: the set of `resources:` lines of its jobs} from a dry run's job listing."""
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", output, re.M)
    plan: dict[str, set[str]] = {}
    for rule, resources in jobs:
        plan.setdefault(rule, set()).add(resources)
    return plan


@pytest.mark.parametrize(
    ("device", "on_cpu_partition"),
    [
        ("cuda", {"prepare_dataset", "train_tokenizer", "prepare_model", "build_token_cache"}),
        (
            "cpu",
            {
                "prepare_dataset",
                "train_tokenizer",
                "prepare_model",
                "build_token_cache",
                "calibrate_device",
                "train_cell",
            },
        ),
    ],
)
def test_jobs_that_need_no_gpu_go_to_the_named_cpu_partition(tmp_path, repo, run_snakemake, device, on_cpu_partition):
    shutil.copy(repo / ".test" / "config.yaml", tmp_path / "config.yaml")
    (tmp_path / "README.md").write_text("")
    out = run_snakemake(tmp_path, "-n", "--config", f"hardware={{device: {device}, cpu_partition: cpuq}}").stdout
    plan = planned_resources(out)
    assert on_cpu_partition <= set(plan)
    for rule, lines in plan.items():
        named = {"slurm_partition=cpuq" in line for line in lines}
        assert named == {rule in on_cpu_partition}, (rule, lines)
