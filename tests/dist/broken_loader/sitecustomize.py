"""A deliberately broken loader, to show that the memory suite's bounds can fail at its model size.

With this directory on PYTHONPATH every Python process (pytest, the launcher, each rank) reads the whole
checkpoint into memory when it opens one, as a loader that ignores sharding would, and keeps it while the
checkpoint is open. The sharded-setup assertions must then fail:

    PYTHONPATH=tests/dist/broken_loader pytest -m memory -k "never_holds or pipeline_stage"
"""

import importlib.abc
import importlib.util
import sys

TARGET = "ftbench.train.weights"


def _read_everything(weights) -> None:
    import torch

    opened = weights.Checkpoint.__init__

    def __init__(self, model_dir):
        opened(self, model_dir)
        self.whole = {}
        for name, entry in self.entries.items():
            tensor = torch.empty(entry.numel, dtype=entry.dtype)
            self.read(name, 0, tensor)
            self.whole[name] = tensor

    weights.Checkpoint.__init__ = __init__


class _BreakOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _read_everything(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _BreakOnImport())
