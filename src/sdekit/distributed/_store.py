"""The sample store: a directory holding a zarr array of the samples, the job's configuration and shard markers.

Layout of a store ``STORE/``::

    STORE/sdekit.json           the configuration of the job (compared on every reopen) and informational fields
    STORE/zarr.json             a zarr (v3) group ...
    STORE/x/                    ... with one array, x: (n, *event_shape), chunks (shard_size, *event_shape),
                                so shard k is chunk k; missing samples read as NaN
    STORE/shards/00000012.json  the marker of finished shard 12: its ids, nfe, solver stats, moments, the
                                SHA-256 of its samples

A shard counts as done when, and only when, its marker exists. A worker writes the shard's chunk (zarr writes it
to a temporary name and renames it), then the marker (to a temporary name, renamed): a worker killed at any
point leaves either no marker (the shard is rerun and its chunk overwritten) or a complete chunk and its marker.
Markers and the configuration are renamed into place with ``os.replace``, atomic on POSIX file systems (local
disks, NFS, Lustre, GPFS); object stores (S3, GCS) are not supported as stores. Writes are not ``fsync`` ed: a
store survives killed processes, not a machine losing power.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

__all__ = ["SampleStore", "StoreMismatchError", "open_store", "CONFIG_NAME"]

CONFIG_NAME = "sdekit.json"
ARRAY_NAME = "x"
SHARDS_DIR = "shards"
FORMAT = "sdekit-samples/1"


class StoreMismatchError(ValueError):
    """A store was written by a job with another configuration (or is not a sample store)."""


def _import_zarr():
    try:
        import zarr
    except ImportError as exc:
        raise ImportError("a sample store needs zarr, not installed: pip install 'sdekit[distributed]'") from exc
    return zarr


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary name in the same folder and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _flatten(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        if not d:
            out[prefix.rstrip(".")] = {}
    else:
        out[prefix.rstrip(".")] = d
    return out


def config_differences(stored: dict, wanted: dict) -> list:
    """``["key: stored A, requested B", ...]`` for every flattened key on which two configurations differ."""
    a, b = _flatten(stored), _flatten(wanted)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            out.append(f"{key}: stored {_short(a.get(key, '<absent>'))}, requested {_short(b.get(key, '<absent>'))}")
    return out


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def samples_digest(x: np.ndarray) -> str:
    """SHA-256 of a shard's samples (dtype, shape and bytes)."""
    h = hashlib.sha256(f"{x.dtype.str}{tuple(x.shape)}".encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


class SampleStore:
    """A sample store directory (see the module docstring). Open one with :func:`open_store` (to read) or let
    :func:`sdekit.distributed.sample` create it."""

    def __init__(self, path):
        self.path = Path(path)

    # -- creation and reopening ------------------------------------------------------------------------------
    @classmethod
    def open_or_create(cls, path, config: dict) -> SampleStore:
        """The store at ``path`` for a job with ``config``: created when the folder is new or empty, reopened
        when it holds a store of the same configuration, reconfigured when it holds a store of another configuration
        with no finished shard (a job that failed before any shard finished: nothing computed is lost);
        :class:`StoreMismatchError` otherwise (nothing in it is touched)."""
        _import_zarr()
        store = cls(path)
        p = store.path
        if p.exists() and not p.is_dir():
            raise StoreMismatchError(f"store {str(p)!r} is a file, not a directory")
        cfg_path = p / CONFIG_NAME
        if cfg_path.exists():
            stored = store.config
            diffs = config_differences(stored["job"], config["job"])
            if diffs and not store.finished():
                # no shard finished: nothing computed would be lost, so the new configuration replaces the old
                # one (a partly written chunk of a killed shard goes with it)
                shutil.rmtree(p / ARRAY_NAME, ignore_errors=True)
                atomic_write_text(cfg_path, json.dumps(config, indent=1, sort_keys=True))
            elif diffs:
                raise StoreMismatchError(
                    f"store {str(p)!r} was written by a job with another configuration, and is never overwritten; "
                    f"use a new directory (or delete this one). Differences: "
                    + "; ".join(diffs[:8])
                    + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "")
                )
        elif p.exists() and any(p.iterdir()):
            raise StoreMismatchError(
                f"store {str(p)!r} is a non-empty directory without {CONFIG_NAME}: not a sample store (or one whose "
                "creation was interrupted before anything was computed); give a new or empty directory"
            )
        else:
            p.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cfg_path, json.dumps(config, indent=1, sort_keys=True))
        (p / SHARDS_DIR).mkdir(exist_ok=True)
        if not (p / "zarr.json").exists():
            zarr = _import_zarr()
            zarr.open_group(str(p), mode="a")
        return store

    @property
    def config(self) -> dict:
        """The stored configuration: ``{"job": compared fields, "info": informational fields}``."""
        try:
            with open(self.path / CONFIG_NAME, encoding="utf-8") as f:
                cfg = json.load(f)
        except FileNotFoundError:
            raise StoreMismatchError(f"{str(self.path)!r} is not a sample store (no {CONFIG_NAME})") from None
        except json.JSONDecodeError as exc:
            raise StoreMismatchError(f"{str(self.path / CONFIG_NAME)!r} is not valid JSON: {exc}") from None
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or "job" not in cfg:
            raise StoreMismatchError(f"{str(self.path / CONFIG_NAME)!r} is not an {FORMAT} configuration")
        return cfg

    # -- shards ------------------------------------------------------------------------------------------------
    def marker_path(self, index: int) -> Path:
        return self.path / SHARDS_DIR / f"{index:08d}.json"

    def finished(self) -> dict:
        """``{shard index: marker record}`` of the finished shards."""
        out = {}
        for m in (self.path / SHARDS_DIR).glob("[0-9]*.json"):
            with open(m, encoding="utf-8") as f:
                rec = json.load(f)
            out[int(rec["index"])] = rec
        return out

    def write_shard(self, index: int, start: int, x: np.ndarray, record: dict, n: int, shard_size: int) -> None:
        """Write shard ``index`` (samples ``start .. start + len(x)`` of ``n``), then its marker (on a worker)."""
        zarr = _import_zarr()
        arr = self._array(zarr, x, n, shard_size)
        arr[start : start + x.shape[0]] = x
        atomic_write_text(self.marker_path(index), json.dumps(record))

    def _array(self, zarr, x, n, shard_size):
        where = str(self.path / ARRAY_NAME)
        try:
            arr = zarr.open_array(where, mode="r+")
        except (FileNotFoundError, KeyError, ValueError, LookupError, OSError) as exc:
            # the first shard to finish creates the array (its dtype and event shape are the job's)
            try:
                arr = zarr.create_array(
                    where,
                    shape=(n,) + tuple(x.shape[1:]),
                    chunks=(shard_size,) + tuple(x.shape[1:]),
                    dtype=x.dtype,
                    fill_value=np.nan if x.dtype.kind == "f" else 0,
                )
            except Exception:  # another worker created it meanwhile
                try:
                    arr = zarr.open_array(where, mode="r+")
                except Exception:
                    raise exc from None
        if tuple(arr.shape[1:]) != tuple(x.shape[1:]) or np.dtype(arr.dtype) != x.dtype:
            raise StoreMismatchError(
                f"store {str(self.path)!r} holds samples of shape (n, *{tuple(arr.shape[1:])}) and dtype {arr.dtype}; "
                f"this job produced {tuple(x.shape[1:])}, {x.dtype}"
            )
        return arr

    # -- reading -------------------------------------------------------------------------------------------------
    @property
    def array(self):
        """The zarr array ``x`` (``None`` before the first shard finished)."""
        zarr = _import_zarr()
        where = self.path / ARRAY_NAME
        if not (where / "zarr.json").exists():
            return None
        return zarr.open_array(str(where), mode="r")

    def to_dask(self):
        """The samples as a dask array backed by the store, chunked by shard."""
        import dask.array as da

        arr = self.array
        if arr is None:
            raise ValueError(f"store {str(self.path)!r} has no finished shard yet")
        return da.from_zarr(arr)

    def verify(self) -> list:
        """Indices of finished shards whose stored samples do not match their marker's SHA-256 (reads them all)."""
        arr = self.array
        bad = []
        for index, rec in sorted(self.finished().items()):
            x = np.asarray(arr[rec["start"] : rec["stop"]])
            if samples_digest(x) != rec["sha256"]:
                bad.append(index)
        return bad

    def __repr__(self) -> str:
        return f"SampleStore({str(self.path)!r})"


def open_store(path) -> SampleStore:
    """Open an existing sample store (to read its configuration, markers and samples); ``StoreMismatchError`` if
    ``path`` is not one."""
    store = SampleStore(path)
    store.config  # noqa: B018 -- raises when path is not a store
    return store
