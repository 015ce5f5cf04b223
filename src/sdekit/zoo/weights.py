"""Reading and writing the zoo's weight files: ``.npz`` archives written byte-for-byte reproducibly.

``numpy.savez`` stamps every member with the current time, so two saves of the same arrays differ. Here each
array is stored uncompressed with a fixed time stamp, in sorted key order, so equal arrays give an equal file
(and an equal SHA-256). ``numpy.load`` reads the result like any ``.npz``.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["save_arrays", "load_arrays", "arrays_to_bytes", "sha256_file", "sha256_bytes"]

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def arrays_to_bytes(arrays: dict) -> bytes:
    """The ``.npz`` bytes of ``arrays`` (name -> numpy array; no object arrays), independent of the clock."""
    if not isinstance(arrays, dict) or not arrays:
        raise ValueError(f"arrays must be a non-empty dict of name -> array, got {type(arrays).__name__}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            if not isinstance(name, str) or not name:
                raise ValueError(f"array names must be non-empty strings, got {name!r}")
            arr = np.asarray(arrays[name])
            if arr.dtype == object:
                raise TypeError(f"array {name!r} has dtype object; only plain numeric or string arrays are stored")
            member = io.BytesIO()
            np.lib.format.write_array(member, arr if arr.flags.c_contiguous else arr.copy(), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def save_arrays(path, arrays: dict) -> str:
    """Write ``arrays`` to ``path`` as a reproducible ``.npz``; returns the file's SHA-256 (hex)."""
    data = arrays_to_bytes(arrays)
    Path(path).write_bytes(data)
    return sha256_bytes(data)


def load_arrays(path) -> dict:
    """All arrays of the ``.npz`` at ``path`` (no pickles), as a dict name -> array."""
    with np.load(Path(path), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    """Hex SHA-256 of the file at ``path``."""
    return sha256_bytes(Path(path).read_bytes())
