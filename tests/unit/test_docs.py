"""The docs hold together: every relative link of README.md and docs/*.md names a file that exists and,
into a markdown page, a heading that page has."""

import re
from pathlib import Path

LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    titles = re.findall(r"^#{1,6} (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", t.strip().lower()).replace(" ", "-") for t in titles}


def test_every_relative_link_resolves(repo):
    broken = []
    for page in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def documented_rules(page: Path) -> list[str]:
    """The rule column of a page's rule table."""
    return re.findall(r"^\| `(\w+)` \|", page.read_text(), re.M)


def test_what_runs_lists_every_rule_snakemake_lists(repo, tmp_path, run_snakemake):
    # with repeats, every rule exists (merge_repeats only then)
    config = repo / ".test" / "config.yaml"
    listed = run_snakemake(tmp_path, "--list-rules", "--config", "repeats=2", configfile=config).stdout.split()
    assert sorted(documented_rules(repo / "docs" / "what-runs.md")) == sorted(listed)


def test_readmes_layout_names_every_module_of_the_package(repo):
    layout = repo.joinpath("README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    package = repo / "src" / "ftbench"
    modules = {p.stem for p in package.rglob("*.py") if not p.name.startswith("__")}
    named = set(re.findall(r"\b(\w+)\b", layout))
    assert sorted(modules - named) == []
    folders = {p.name for p in package.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert sorted(f for f in folders if f"{f}/" not in layout) == []
