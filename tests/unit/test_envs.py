"""The conda env files' shape and pins. conda channels are not reachable here: tests/e2e/test_conda_envs.py
installs each env's pip section into a fresh venv and runs that env's rules from it."""

import re
from importlib.metadata import version

import yaml
from conftest import RULE_ENV, pip_section
from packaging.specifiers import SpecifierSet
from packaging.version import Version


def pins(path) -> dict[str, str]:
    return dict(line.split("==") for line in pip_section(path) if not line.startswith("-"))


def test_every_rule_has_a_conda_env_that_exists(repo):
    common = (repo / "rules" / "common.smk").read_text()
    train_envs = re.findall(r'"\.\./(envs/train[^"]*\.yaml)"', common)
    assert sorted(train_envs) == ["envs/train-cpu.yaml", "envs/train.yaml"]
    for smk in (repo / "rules").glob("*.smk"):
        text = smk.read_text()
        envs = RULE_ENV.findall(text)
        assert len(re.findall(r"^\s*rule \w+:", text, re.M)) == len(envs), smk.name
        for env in envs:
            for path in train_envs if env == "TRAIN_ENV" else [env.strip('"').removeprefix("../")]:
                assert (repo / path).is_file(), (smk.name, path)


def test_every_env_pins_its_packages_and_installs_ftbench_from_the_checkout(repo):
    for env in (repo / "envs").glob("*.yaml"):
        spec = yaml.safe_load(env.read_text())
        assert spec["channels"] == ["conda-forge", "nodefaults"], env.name
        assert "python=3.11" in spec["dependencies"], env.name
        packages = [line for line in pip_section(env) if not line.startswith("-")]
        assert packages and all(re.fullmatch(r"[A-Za-z0-9._-]+==\S+", p) for p in packages), env.name
        hook = env.with_name(env.stem + ".post-deploy.sh")
        assert hook.is_symlink() and hook.resolve() == repo / "envs" / "install-ftbench.sh", env.name


def test_envs_agree_and_the_cpu_train_env_differs_only_by_its_torch_index(repo):
    seen: dict[str, str] = {}
    for env in (repo / "envs").glob("*.yaml"):
        for name, pin in pins(env).items():
            assert seen.setdefault(name, pin) == pin, f"{env.name} pins {name}=={pin}, another env {seen[name]}"
    train, cpu = pip_section(repo / "envs" / "train.yaml"), pip_section(repo / "envs" / "train-cpu.yaml")
    assert [line for line in cpu if line.startswith("-")] == ["--extra-index-url https://download.pytorch.org/whl/cpu"]
    assert [line for line in cpu if not line.startswith("-")] == train


def test_env_pins_are_the_versions_installed_here(repo):
    """CI installs with the pins as constraints (.ci/run); this says so in a local venv too."""
    for env in (repo / "envs").glob("*.yaml"):
        for name, pin in pins(env).items():
            # torch==2.13.0 admits this machine's 2.13.0+cpu, as pip does
            here = version(name)
            assert Version(here) in SpecifierSet(f"=={pin}"), f"{env.name}: {name}=={pin}, installed {here}"
