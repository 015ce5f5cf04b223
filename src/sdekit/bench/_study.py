"""Several comparisons at once: :func:`study`."""

from __future__ import annotations

import contextlib

from ..progress import progress_bar
from ._compare import compare
from ._result import CompareResult

__all__ = ["study"]


def study(
    densities=("gaussian", "ring8"),
    sdes=("vp",),
    grids=("uniform",),
    *,
    csv_path=None,
    progress=False,
    client=None,
    **compare_options,
) -> list:
    """:func:`compare` over every combination of ``densities x sdes x grids``; one :class:`CompareResult` each.

    ``compare_options`` (solvers, nfe, n, seed, backend, metric, ...) are passed through. With ``csv_path`` all
    rows go to one CSV (its ``density``, ``sde`` and ``grid`` columns tell the studies apart).

    ``client``: run every comparison's cells on a Dask cluster (a ``distributed.Client``, a scheduler address or
    ``"local:N"``, connected to once for the whole study; see :func:`compare`); the results equal the serial ones.
    """
    results = []
    combos = [(d, s, g) for d in densities for s in sdes for g in grids]
    with contextlib.ExitStack() as stack:
        if client is not None:
            from ..distributed import connect

            client = stack.enter_context(connect(client))
        with progress_bar(len(combos), progress, desc="study") as bar:
            for d, s, g in combos:
                results.append(compare(d, s, grid=g, client=client, **compare_options))
                bar.update(1)
    if csv_path is not None:
        rows = [r for res in results for r in res.rows]
        CompareResult(rows=rows, info=results[0].info if results else {}).to_csv(csv_path)
    return results
