"""Counting host synchronisations of torch tensors, shared by the torch test modules."""

import torch

#: Tensor methods that read a value on the host (each is a device synchronisation).
SYNCS = ("__bool__", "item", "__float__", "__int__", "__index__", "tolist", "numpy", "__array__")


def count_syncs(monkeypatch):
    """Patch the host-reading tensor methods to count their calls; returns the live ``{"n": count}``."""
    count = {"n": 0}
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            count["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return count
