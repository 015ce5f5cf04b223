"""The kernel registry: which fused kernel runs which solver, and what a kernel is.

:data:`KERNELS` maps ``(solver class, process kind)`` (kind ``"sde"`` or ``"ode"``) to a :class:`Kernel`. Kernel
modules (:mod:`sdekit.backends.numba.kernels`) import this module and register into it when they are imported;
this module imports no kernel, so the registrations make no import cycle. The recipe for a new kernel is in the
docstring of :mod:`sdekit.backends.numba`.

Two names here are part of every kernel body's contract:

* :data:`score_block` -- the global name a body calls for the score of a block of samples,
  ``score_block(xb, L, t, coef_row, p0, p1, p2, p3, work, out)``. It calls the analytic densities' compiled score
  (:func:`sdekit.backends.numba.scores.analytic_block_score`) through a symbol, one compiled copy shared by every
  kernel (:mod:`sdekit.backends.numba.linked`: not re-optimised into each kernel); a body imports it from here
  (``from sdekit.backends.numba.registry import score_block``), and :class:`~sdekit.backends.numba.RowScore`
  compiles the same body with this global rebound to an adapter of the user's row function.
* :data:`score_lanes` -- the same with one time per lane (the fused adaptive kernels, where every sample keeps
  its own time), ``score_lanes(xb, L, tl, cl, p0, p1, p2, p3, work, out)``;
* :data:`NC` -- the columns of the host's ``coef`` table before the score's own constants:
  ``h, a(s), c g(s)^2, g(s), sqrt(|h|)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from numba import njit

from .linked import call_score_block, call_score_lanes

__all__ = ["Kernel", "KERNELS", "register_kernel", "find_kernel", "score_block", "score_lanes", "NC"]

#: Columns of ``coef`` before the score's own constants: h, a(s), c g(s)^2, g(s), sqrt(|h|).
NC = 5


@njit(inline="always", error_model="numpy")
def score_block(xb, L, t, coef, p0, p1, p2, p3, work, out):
    """The name the kernel bodies call: the analytic block score through its shared symbol. The registered
    kernels compiled against it are cached on disk; kernels for a user's RowScore are built from the same bodies
    with this name rebound."""
    call_score_block(xb, L, t, coef, p0, p1, p2, p3, work, out)


@njit(inline="always", error_model="numpy")
def score_lanes(xb, L, tl, cl, p0, p1, p2, p3, work, out):
    """The name the fused adaptive kernels call, ``score_lanes(xb, L, tl, cl, p0, p1, p2, p3, work, out)``: the
    block score with a time ``tl[l]`` and constants ``cl[:, l]`` per lane (every sample keeps its own time), through
    its shared symbol. Rebound for a RowScore like :data:`score_block`."""
    call_score_lanes(xb, L, tl, cl, p0, p1, p2, p3, work, out)


@dataclass
class Kernel:
    """A fused kernel: ``body`` (see :mod:`sdekit.backends.numba`, "Adding a kernel") and what the host prepares.

    ``stage_times(solver, grid) -> (steps, S)`` times at which the drift is evaluated in each step;
    ``extra(solver) -> tuple of arrays`` the solver's coefficients; ``n_noise`` normal fields per step;
    ``grid_extra(solver, process, grid) -> tuple of arrays``, when given, replaces ``extra`` (per-step
    coefficients that depend on the grid and the SDE); ``accepts(solver)`` False sends a configuration the
    kernel does not cover to the per-step path; ``process_stage_times(solver, process, grid)``, when
    given, replaces ``stage_times`` (stage times that depend on the SDE); ``chunkable=False`` for kernels that
    keep a history across steps inside the call (they run the whole grid in one call, even with a progress bar).
    """

    name: str
    body: Callable
    stage_times: Callable
    extra: Callable = lambda solver: ()  # noqa: E731
    n_noise: int = 0
    grid_extra: Callable | None = None
    process_stage_times: Callable | None = None
    accepts: Callable = lambda solver: True  # noqa: E731
    chunkable: bool = True
    _compiled: object = None

    def analytic(self):
        """The kernel compiled against the analytic block score (cached on disk). Nothing is compiled or loaded
        here; a caller runs :func:`~sdekit.backends.numba.linked.link_all` before the first call (the kernel,
        read from the cache, looks the shared score up by name)."""
        if self._compiled is None:
            self._compiled = njit(cache=True, parallel=True, error_model="numpy")(self.body)
        return self._compiled


#: Registered kernels by ``(solver class, "sde" | "ode")``.
KERNELS: dict[tuple[type, str], Kernel] = {}


def register_kernel(solver_cls: type, kind: str, kernel: Kernel) -> None:
    """Register ``kernel`` for solver class ``solver_cls`` on processes of ``kind`` (``"sde"`` or ``"ode"``)."""
    if kind not in ("sde", "ode"):
        raise ValueError(f"kind must be one of ['sde', 'ode'], got {kind!r}")
    if not isinstance(kernel, Kernel):
        raise TypeError(f"kernel must be a Kernel, got {type(kernel).__name__}")
    KERNELS[(solver_cls, kind)] = kernel


def find_kernel(solver, kind: str) -> Kernel | None:
    """The registered kernel for ``solver`` on a ``kind`` process, or None.

    Look-up walks the solver's MRO; an entry found on a base class is used only if the solver does not override
    that class's ``step`` (a subclass with its own update never runs its parent's kernel). The built-in kernels
    are registered when :mod:`sdekit.backends.numba` is imported.
    """
    for cls in type(solver).__mro__:
        kernel = KERNELS.get((cls, kind))
        if kernel is not None:
            if cls is type(solver) or getattr(type(solver), "step", None) is getattr(cls, "step", None):
                return kernel
            return None
    return None
