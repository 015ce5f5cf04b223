"""Sharded, resumable sampling on a Dask cluster, bit-identical to one process.

sdekit's noise is counter-based: sample ``i``'s prior draw and every noise increment depend only on
``(seed, i)``. So ``n`` samples split into shards of ids, each drawn by ``sdekit.sample(..., sample_ids=ids)``
on whichever worker, then put back in id order, are the samples of one ``sdekit.sample(n=n)`` call, bit for
bit. :func:`sample` does that on a Dask cluster (``dask.distributed``: a ``LocalCluster`` on one machine, the
same client on many), optionally into a store on disk that a restarted job resumes from.

* :func:`sample` -- the sharded ``sdekit.sample``; ``store=`` keeps the shards (zarr) and resumes;
* :func:`open_store` / :class:`SampleStore` -- read a store: configuration, finished shards, samples (zarr or
  dask), a checksum pass;
* :func:`connect` -- a ``distributed.Client`` from ``None`` / ``"local:N"`` / an address (what the ``client=``
  arguments here, of :func:`sdekit.bench.compare` and of ``sdekit compare --dask`` accept);
* :class:`StoreMismatchError` -- a store of another configuration (a ``ValueError``).

Needs the ``distributed`` extra: ``pip install 'sdekit[distributed]'`` (``dask[distributed]`` and ``zarr``);
importing this module does not.
"""

from __future__ import annotations

from ._client import INSTALL_HINT, WORKER_DEATHS_ALLOWED, connect
from ._fingerprint import fingerprint
from ._sample import REFUSED_OPTIONS, Moments, sample
from ._store import SampleStore, StoreMismatchError, open_store

__all__ = [
    "sample",
    "connect",
    "open_store",
    "SampleStore",
    "StoreMismatchError",
    "Moments",
    "fingerprint",
    "REFUSED_OPTIONS",
    "WORKER_DEATHS_ALLOWED",
    "INSTALL_HINT",
]
