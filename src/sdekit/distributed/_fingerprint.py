"""Fingerprints of the objects a sharded job depends on: :func:`fingerprint` and :func:`describe`.

A sample store keeps the configuration of the job that wrote it, so that a restart with another score, SDE or
solver is refused instead of mixing two jobs' samples in one array. Objects are not compared by identity
(a restarted job has new objects) but by a SHA-256 digest of what determines their output:

* numbers, strings, arrays (dtype, shape and bytes), torch tensors and modules (every ``state_dict`` entry and
  the module's other attributes), containers;
* functions *of the user's code*: their bytecode, constants, defaults, closure cells and the module globals they
  name (so a score closing over an array, or reading a global weight matrix, is fingerprinted by that array);
  functions and classes of sdekit and of installed libraries by their qualified name only (the store records
  sdekit's version; a numpy upgrade does not invalidate a store);
* other objects by their class and their attributes. Private attributes holding caches (``_name`` bound to
  ``None``, a dict or a compiled numba function) are skipped, so a score that has been called once (and filled
  its caches) keeps its fingerprint.

The digest depends on the Python version where bytecode is hashed (a store written under Python 3.11 with a
score defined in a script is refused under 3.12). What cannot be seen (a score reading a file, a global that
changes at run time, a C extension's state) is not in the fingerprint: the store is then only as safe as the
name it records.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import sysconfig
import types

import numpy as np

__all__ = ["fingerprint", "describe", "qualified_name"]

#: Objects visited per fingerprint before the walk stops (and records that it stopped).
MAX_NODES = 200_000
#: Nesting depth of the walk.
MAX_DEPTH = 24


def qualified_name(obj) -> str:
    """``module.qualname`` of a function or class (of the object's class otherwise)."""
    target = obj if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) else type(obj)
    module = getattr(target, "__module__", None) or "?"
    return f"{module}.{getattr(target, '__qualname__', getattr(target, '__name__', '?'))}"


@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple:
    roots = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(os.path.realpath(path))
    for path in sys.path:
        if path and os.path.basename(path) in ("site-packages", "dist-packages"):
            roots.add(os.path.realpath(path))
    return tuple(sorted(roots))


@functools.lru_cache(maxsize=4096)
def _is_library_module(name: str | None) -> bool:
    """True for sdekit, builtins and modules installed in the interpreter's library folders."""
    if not name or name == "__main__":
        return False
    top = name.split(".")[0]
    if top in ("sdekit", "builtins") or top in sys.builtin_module_names:
        return True
    module = sys.modules.get(name) or sys.modules.get(top)
    path = getattr(module, "__file__", None)
    if path is None:
        return module is not None  # a built-in or namespace module
    path = os.path.realpath(path)
    return any(path.startswith(root + os.sep) for root in _library_roots())


def _is_numba_dispatcher(obj) -> bool:
    return type(obj).__module__.startswith("numba") and hasattr(obj, "py_func")


class _Walker:
    def __init__(self):
        self.h = hashlib.sha256()
        self.memo: dict[int, bytes] = {}  # id -> digest of an object already walked (content, not identity)
        self.stack: set[int] = set()  # ids being walked: a cycle
        self.keep: list = []  # ids stay valid while the walk runs
        self.nodes = 0

    def tag(self, *parts) -> None:
        for p in parts:
            self.h.update(str(p).encode("utf-8", "backslashreplace"))
            self.h.update(b"\x1f")

    def feed(self, obj, depth: int = 0) -> None:  # one branch per kind of object
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            self.tag("<truncated>")
            return
        if obj is None or isinstance(obj, (bool, int, float, complex, str)):
            self.tag(type(obj).__name__, repr(obj))
            return
        if isinstance(obj, (bytes, bytearray, memoryview)):
            data = bytes(obj)
            self.tag("bytes", len(data))
            self.h.update(data)
            return
        # an object reached twice hashes the same both times (its digest is memoised): the fingerprint does not
        # depend on which objects happen to be shared (two empty sets or one)
        key = id(obj)
        if key in self.stack:
            self.tag("<cycle>")
            return
        if key in self.memo:
            self.h.update(self.memo[key])
            return
        outer, self.h = self.h, hashlib.sha256()
        self.stack.add(key)
        self.keep.append(obj)
        try:
            self._feed(obj, depth + 1)
        finally:
            digest = self.h.digest()
            self.h = outer
            self.stack.discard(key)
        self.memo[key] = digest
        self.h.update(digest)

    def _feed(self, obj, nxt: int) -> None:
        torch = sys.modules.get("torch")
        if isinstance(obj, np.ndarray):
            self.tag("ndarray", obj.dtype.str, obj.shape)
            if obj.dtype.kind == "O":
                for v in obj.ravel():
                    self.feed(v, nxt)
            else:
                self.h.update(np.ascontiguousarray(obj).tobytes())
            return
        if isinstance(obj, np.generic):
            self.tag("npscalar", obj.dtype.str)
            self.h.update(obj.tobytes())
            return
        if torch is not None and isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            self.tag("tensor", t.dtype, tuple(t.shape))
            self.h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            return
        if torch is not None and isinstance(obj, torch.nn.Module):
            self.feed(type(obj), nxt)
            self.tag("module", obj.training)
            for name, value in obj.state_dict().items():
                self.tag(name)
                self.feed(value, nxt)
            skip = {"_parameters", "_buffers", "_modules", "training"}
            self._attributes({k: v for k, v in vars(obj).items() if k not in skip and "hook" not in k}, nxt)
            for name, child in obj.named_children():  # children's non-tensor attributes (weights are above)
                self.tag("child", name)
                self._attributes({k: v for k, v in vars(child).items() if k not in skip and "hook" not in k}, nxt)
            return
        if isinstance(obj, (list, tuple)):
            self.tag(type(obj).__name__, len(obj))
            for v in obj:
                self.feed(v, nxt)
            return
        if isinstance(obj, dict):
            self.tag("dict", len(obj))
            for k in sorted(obj, key=repr):
                self.feed(k, nxt)
                self.feed(obj[k], nxt)
            return
        if isinstance(obj, (set, frozenset)):
            self.tag(type(obj).__name__, sorted(fingerprint(v) for v in obj))
            return
        if isinstance(obj, types.ModuleType):
            self.tag("module", obj.__name__)
            return
        if isinstance(obj, types.CodeType):
            self._code(obj, nxt)
            return
        if isinstance(obj, types.FunctionType):
            self._function(obj, nxt)
            return
        if isinstance(obj, types.MethodType):
            self.tag("method")
            self.feed(obj.__func__, nxt)
            self.feed(obj.__self__, nxt)
            return
        if isinstance(obj, functools.partial):
            self.tag("partial")
            self.feed(obj.func, nxt)
            self.feed(obj.args, nxt)
            self.feed(obj.keywords, nxt)
            return
        if _is_numba_dispatcher(obj):
            self.tag("numba")
            self.feed(obj.py_func, nxt)
            return
        if isinstance(obj, type):
            self.tag("class", qualified_name(obj))
            if not _is_library_module(obj.__module__):  # the user's class: its methods' code
                for name in sorted(vars(obj)):
                    v = vars(obj)[name]
                    if isinstance(v, (types.FunctionType, staticmethod, classmethod, property)):
                        self.tag(name)
                        self.feed(getattr(v, "__func__", getattr(v, "fget", v)), nxt)
            return
        if isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType)):
            self.tag("builtin", getattr(obj, "__module__", None), getattr(obj, "__qualname__", repr(obj)))
            return
        # any other object: its class and its attributes
        self.feed(type(obj), nxt)
        state = dict(getattr(obj, "__dict__", {}) or {})
        for cls in type(obj).__mro__:
            slots = getattr(cls, "__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if name not in state and name != "__dict__" and hasattr(obj, name):
                    state[name] = getattr(obj, name)
        if not state:
            r = repr(obj)
            self.tag("repr", r if " at 0x" not in r else "")
        self._attributes(state, nxt)

    def _attributes(self, state: dict, depth: int) -> None:
        for name in sorted(state):
            value = state[name]
            if name.startswith("_") and (value is None or isinstance(value, dict) or _is_numba_dispatcher(value)):
                continue  # a cache
            self.tag("attr", name)
            self.feed(value, depth)

    def _code(self, code: types.CodeType, depth: int) -> None:
        self.tag("code", code.co_name, code.co_argcount, code.co_kwonlyargcount, code.co_flags, code.co_names)
        self.h.update(code.co_code)
        for c in code.co_consts:
            self.feed(c, depth)

    def _function(self, fn: types.FunctionType, depth: int) -> None:
        self.tag("function", qualified_name(fn))
        if _is_library_module(fn.__module__):
            return
        self._code(fn.__code__, depth)
        self.feed(fn.__defaults__, depth)
        self.feed(fn.__kwdefaults__, depth)
        for cell in fn.__closure__ or ():
            try:
                self.feed(cell.cell_contents, depth)
            except ValueError:  # an empty cell
                self.tag("<empty cell>")
        g = fn.__globals__
        for name in sorted(_global_names(fn.__code__)):
            if name in g:
                self.tag("global", name)
                self.feed(g[name], depth)


def _global_names(code: types.CodeType) -> set:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def fingerprint(obj) -> str:
    """The SHA-256 hex digest of what determines ``obj``'s behaviour (see the module docstring)."""
    w = _Walker()
    w.feed(obj)
    return w.h.hexdigest()


def describe(value):
    """A JSON value that stands for ``value`` in a stored configuration (numbers, strings and lists as they are;
    arrays and other objects as their kind and fingerprint)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: describe(value[k]) for k in sorted(value)}
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return {"array": [int(s) for s in shape], "dtype": str(value.dtype), "fingerprint": fingerprint(value)}
    return {"object": qualified_name(value), "fingerprint": fingerprint(value)}


def safe_repr(obj, limit: int = 300) -> str:
    """``repr(obj)`` when it says something stable (no memory address), else the qualified name."""
    try:
        r = repr(obj)
    except Exception:  # a broken __repr__ must not stop a job
        r = ""
    if not r or " at 0x" in r:
        return qualified_name(obj)
    return r if len(r) <= limit else r[: limit - 3] + "..."
