"""The test tree itself: pytest imports test modules by basename (no packages), so two files of one name in
different folders stop the whole collection."""

from collections import Counter


def test_test_module_basenames_are_unique(repo):
    names = Counter(p.name for p in (repo / "tests").rglob("test_*.py"))
    assert [name for name, n in names.items() if n > 1] == []
