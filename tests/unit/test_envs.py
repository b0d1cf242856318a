"""Conda env files are not installable here (no conda channels), so CI checks their shape instead."""

import re

import yaml


def test_every_rule_names_an_env_file_that_exists_and_pins_its_packages(repo):
    for smk in (repo / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"\.\./(envs/[^"]+)"', smk.read_text()):
            spec = yaml.safe_load((repo / env).read_text())
            assert spec["channels"] == ["conda-forge", "nodefaults"], env
            deps = spec["dependencies"]
            assert "python=3.11" in deps, env
            pip = next(d["pip"] for d in deps if isinstance(d, dict))
            assert pip and all("==" in p for p in pip), env


def test_every_rule_has_a_conda_env(repo):
    for smk in (repo / "rules").glob("*.smk"):
        text = smk.read_text()
        rules = re.findall(r"^\s*rule \w+:", text, re.M)
        assert len(rules) == len(re.findall(r"^\s+conda:", text, re.M)), smk.name
