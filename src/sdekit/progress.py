"""A progress bar for long solves: tqdm when installed, otherwise nothing."""

from __future__ import annotations

import contextlib


class _NoBar:
    def update(self, n=1):
        pass


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool, desc: str = ""):
    """Yield an object with ``update(n)``; a tqdm bar on stderr when ``enabled``."""
    if not enabled:
        yield _NoBar()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but keep the solver usable without it
        yield _NoBar()
        return
    with tqdm(total=total, desc=desc, leave=False) as bar:
        yield bar
