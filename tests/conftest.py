import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / ".test" / "config.yaml"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def test_config() -> dict:
    """The CI matrix (.test/config.yaml), validated with defaults filled, as the Snakefile sees it."""
    from ftbench.config import validate

    with open(TEST_CONFIG) as f:
        return validate(yaml.safe_load(f), REPO)


@pytest.fixture
def raw_test_config() -> dict:
    with open(TEST_CONFIG) as f:
        return copy.deepcopy(yaml.safe_load(f))


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, check: bool = True):
    """Run the real snakemake CLI on this repo's Snakefile with `workdir` as working directory."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile or workdir / "config.yaml"),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="session")
def run_snakemake():
    return snakemake
