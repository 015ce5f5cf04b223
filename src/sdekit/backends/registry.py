"""The backend registry: each backend's name, what it can run, and the module that runs it.

``solve``, ``sample``, ``bench.compare`` and the CLI read this table and nothing else about backends, so a new
backend is one module with a ``run(job)`` function (and, for a new array library, ``as_state(x)`` and
``initial_state(...)``) plus one :func:`register_backend` call here.

Adding a backend
----------------
1. Write a module with ``run(job) -> (x, saved, nfe, stats)``: ``job`` is the validated
   :class:`sdekit.backends.job.Job` (nothing needs re-checking); ``saved`` the states at ``job.save_index`` as one
   array; ``stats`` a dict with at least ``steps``, ``accepted``, ``rejected``. The drivers of :mod:`sdekit.loop`
   do all of it given the array operations: ``sdekit.loop.solve_grid(job, noise)`` for fixed grids and
   ``sdekit.loop.adaptive.run(job)`` for adaptive solvers; draw noise from the counter-based generator
   (:mod:`sdekit.noise`) so that sample ``i`` sees the numbers of every other backend.
2. For a new array library give the module ``as_state(x)`` (a numpy array -> the backend's array) and
   ``initial_state(sde, shape, seed, *, module, device, dtype)`` (prior draws in that library).
3. Register it below with its capabilities; the registration order is the order of preference of
   ``backend="auto"`` among backends that fit the arguments.
4. Run the backend-equality tests (``tests/test_torch_backend.py`` and ``tests/test_numba_backend.py`` show the
   pattern: the same seed gives the numpy backend's samples to round-off).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

__all__ = ["Backend", "BACKENDS", "register_backend", "get_backend", "available_backends", "backend_names"]


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken or deliberately blocked installation
        return False


@dataclass(frozen=True)
class Backend:
    """One backend's entry.

    Attributes
    ----------
    name : str
        The ``backend=`` value.
    module : str
        The module (imported on first use) whose ``run(job)`` runs a solve.
    requires : str
        The package that must be importable for the backend to be available.
    array_library : {"numpy", "torch"}
        The kind of state it takes (``x0`` as a numpy array or a torch tensor).
    adaptive : bool
        Runs the adaptive solvers (``dopri5``, ``adaptive``).
    tree_noise : bool
        Runs SDE solvers with ``noise="tree"`` (Brownian-tree noise).
    bridge_noise : bool
        Runs adaptive SDE solvers with ``noise="bridge"`` (:mod:`sdekit.bridge_noise`).
    fused_scores : bool
        Runs scores with a compiled form (analytic densities, ``RowScore``) inside fused kernels;
        ``backend="auto"`` prefers it for those scores.
    dtypes : tuple of str
        Floating-point state dtypes it runs.
    devices : tuple of str
        Device kinds it runs on.
    description : str
        One line for ``sdekit --help`` and the docs.
    """

    name: str
    module: str
    requires: str
    array_library: str
    adaptive: bool = False
    tree_noise: bool = False
    bridge_noise: bool = False
    fused_scores: bool = False
    dtypes: tuple = ("float16", "float32", "float64")
    devices: tuple = ("cpu",)
    description: str = ""

    @property
    def available(self) -> bool:
        """True when the backend's package is installed."""
        return _installed(self.requires)

    def load(self):
        """The backend's module (imported on first use: numpy users never import numba's kernels or torch)."""
        return importlib.import_module(self.module)

    def run(self, job):
        """Run the validated ``job``; returns ``(x, saved, nfe, stats)``."""
        return self.load().run(job)

    def as_state(self, x):
        """A numpy array as this backend's state array (a torch tensor for torch; unchanged for numpy)."""
        convert = getattr(self.load(), "as_state", None)
        return x if convert is None else convert(x)


#: Registered backends, in ``backend="auto"``'s order of preference.
BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Add ``backend`` to :data:`BACKENDS` (its name must be new)."""
    if not isinstance(backend, Backend):
        raise TypeError(f"backend must be a Backend, got {backend!r}")
    if backend.name in BACKENDS or backend.name == "auto":
        raise ValueError(f"backend name {backend.name!r} is taken")
    BACKENDS[backend.name] = backend
    return backend


def backend_names() -> tuple:
    """Every valid ``backend=`` value: ``"auto"`` and the registered names (installed or not)."""
    return ("auto", *BACKENDS)


def available_backends() -> list:
    """Names of the registered backends whose packages are installed."""
    return [name for name, b in BACKENDS.items() if b.available]


def get_backend(name: str) -> Backend:
    """The entry of an installed backend; ``ValueError`` for an unknown or uninstalled one (listing the choices)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid backends: {list(backend_names())}")
    backend = BACKENDS[name]
    if not backend.available:
        raise ValueError(
            f"backend {name!r} is not available in this installation (install {backend.requires}); "
            f"available: {sorted(available_backends())}"
        )
    return backend


register_backend(
    Backend(
        "numpy",
        "sdekit.backends.numpy_",
        requires="numpy",
        array_library="numpy",
        adaptive=True,
        tree_noise=True,
        bridge_noise=True,
        description="reference implementation: a vectorised loop over the grid",
    )
)
register_backend(
    Backend(
        "numba",
        "sdekit.backends.numba.backend",
        requires="numba",
        array_library="numpy",
        adaptive=True,
        tree_noise=True,
        bridge_noise=True,
        fused_scores=True,
        description="fused whole-trajectory kernels, parallel over samples (a per-step loop for python scores)",
    )
)
register_backend(
    Backend(
        "torch",
        "sdekit.backends.torch_",
        requires="torch",
        array_library="torch",
        adaptive=True,
        tree_noise=True,
        bridge_noise=True,
        devices=("cpu", "cuda"),
        description="tensors on any device, no host synchronisation inside the fixed-grid loop",
    )
)
