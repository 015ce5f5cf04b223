"""The learned few-step solver: a multistep method in EDM's variables with per-step weights, time offsets and its own
grid (see ``docs/learn.md``).

For a linear SDE write ``x_hat = x / alpha`` and the noise level ``s = sigma / alpha``; the probability-flow ODE is
``d x_hat / d s = eps`` with the noise prediction ``eps = -sigma * score``. Step ``k`` of a :class:`LearnedSolver`
goes from ``grid[k]`` to ``grid[k + 1]`` by

    eps_k       = -sigma' score(alpha' x_hat_k, t'_k),   s'_k = s_k exp(offset_k)   (alpha', sigma' at t'_k)
    x_hat_{k+1} = scale_k x_hat_k + sum_{j < m_k} weights[k, j] eps_{k-j}

(most recent value first). ``offset_k = 0`` evaluates at the grid time itself (LD3's time offset, Tong et al.
2025, as a factor on the noise level the score is told). With ``afs`` the first value is the analytic
``eps_0 = x_hat_0 / sqrt(1 + s_0^2)`` (no score call), as in ``ipndm(afs=True)``. Built from a base solver of the
``ipndm`` / ``ipndm_v`` / ``deis`` family with its weights and ``scale = 1``, ``offset = 0`` the solver *is* that
base on that grid (same operations in the same order: equal to round-off, in practice bit for bit).
"""

from __future__ import annotations

import json
import math

import numpy as np

from .._version import __version__
from ..discrete_vp import DiscreteVPSDE
from ..sdes import LinearSDE
from ..solvers import StepContext, get_solver, parse_solver_spec
from ..solvers._common import coeffs, linear_sde_of, score_at
from ..solvers.base import FixedStepSolver

__all__ = ["LearnedSolver", "load", "base_tables", "sde_from_repr", "same_sde", "FORMAT"]

#: ``format`` field of a saved solver (a JSON file).
FORMAT = "sdekit.learn/1"


def sde_from_repr(text: str) -> LinearSDE:
    """The SDE written by ``repr(sde)`` (``"EDMSDE(sigma_min=0.002, sigma_max=80.0)"``) for the linear SDEs of
    ``sdekit.sdes``; ``ValueError`` for anything else."""
    from .. import sdes

    name, options = parse_solver_spec(text)
    cls = getattr(sdes, name, None)
    if not (isinstance(cls, type) and issubclass(cls, LinearSDE)):
        raise ValueError(f"sde {text!r} is not a linear SDE of sdekit.sdes")
    kwargs = {k: v for k, v in options.items() if k != "T" or "T" in _init_names(cls)}
    sde = cls(**kwargs)
    if repr(sde) != text:
        raise ValueError(f"sde {text!r} does not rebuild (got {sde!r})")
    return sde


def same_sde(a: LinearSDE, b: LinearSDE) -> bool:
    """Whether ``a`` and ``b`` are the same process: the same ``repr`` and, for two :class:`DiscreteVPSDE` (whose
    ``repr`` gives only the number of timesteps), the same trained ``alphas_cumprod``."""
    if repr(a) != repr(b):
        return False
    if isinstance(a, DiscreteVPSDE) and isinstance(b, DiscreteVPSDE):
        return bool(np.array_equal(a.alphas_cumprod, b.alphas_cumprod))
    return True


def _init_names(cls):
    import inspect

    return set(inspect.signature(cls.__init__).parameters)


def base_tables(base, sde: LinearSDE, grid) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, orders)`` of the base solver on ``grid``: ``weights[k, j]`` the weight of ``eps_{k-j}`` in step
    ``k`` (zero past ``orders[k]``), from the base's own ``step_order`` and ``weights`` on the grid's noise levels.
    ``base``: an instance of the ``SigmaAdams`` family (``ipndm``, ``ipndm_v``, ``deis``)."""
    grid = np.asarray(grid, dtype=np.float64)
    n_steps = len(grid) - 1
    levels = [coeffs(sde, t)[1] / coeffs(sde, t)[0] for t in grid]
    h = base.multistep_order
    weights, orders = np.zeros((n_steps, h)), np.zeros(n_steps, dtype=int)
    ctx = StepContext(0, grid, {})
    hist = []
    for k in range(n_steps):
        ctx.index = k
        hist.insert(0, levels[k])
        del hist[h:]
        m = base.step_order(k, len(hist), n_steps)
        weights[k, :m] = base.weights(hist[:m], levels[k + 1], ctx, sde)
        orders[k] = m
    return weights, orders


class LearnedSolver(FixedStepSolver):
    """A probability-flow ODE solver with fitted steps (``grid``), time ``offsets``, state ``scales`` and history
    ``weights`` (see the module docstring); made by :func:`sdekit.learn.fit` or :meth:`from_base`, saved by
    :meth:`save`, read by :func:`load`. ``sample(sde, score, x_T=x, solver=fitted)`` runs it on its own grid
    (passing ``steps`` or another ``grid`` is refused) with ``fitted.nfe_budget`` score evaluations, the final
    denoising included when ``denoise`` (the value it was fitted for).

    Attributes
    ----------
    sde : LinearSDE
        The SDE it was fitted for (``check_process`` refuses another).
    base : str
        The base solver's spec (``"ipndm(afs=True)"``).
    grid : ndarray (N + 1,)
        Its times, ``grid[0] = sde.T`` to ``t_end``.
    weights : ndarray (N, H)
        ``weights[k, j]``: weight of ``eps_{k-j}`` in step ``k`` (zero for ``j >= orders[k]``).
    orders : ndarray (N,) of int
        History values step ``k`` uses.
    scales, offsets : ndarray (N,)
        The factor on ``x_hat_k`` and the log noise-level offset of step ``k``'s score call.
    afs : bool
        Analytic first value (no score call on step 0).
    denoise : bool
        Whether the budget includes ``sample``'s final denoising step (the value it was fitted for).
    report : dict
        Train / held-out RMS endpoint errors of the fitted solver and of its base, and what fitting cost.
    """

    is_ode = True
    nfe_per_step = 1
    name = "learned"

    def __init__(self, sde, base, grid, weights, orders, scales=None, offsets=None, *, afs=False, denoise=True,
                 report=None):  # fmt: skip
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"sde must be a LinearSDE (VPSDE, EDMSDE, ...), got {sde!r}")
        self.sde, self.base = sde, str(base)
        self.grid = np.asarray(grid, dtype=np.float64).copy()
        n_steps = len(self.grid) - 1
        if self.grid.ndim != 1 or n_steps < 1 or not np.all(np.diff(self.grid) < 0):
            raise ValueError(f"grid must be a decreasing 1-D array of at least 2 times, got {grid!r}")
        self.weights = np.atleast_2d(np.asarray(weights, dtype=np.float64)).copy()
        self.orders = np.asarray(orders, dtype=int).copy()
        if self.weights.shape[0] != n_steps or self.orders.shape != (n_steps,):
            raise ValueError(f"weights must have {n_steps} rows and orders {n_steps} entries (one per step), got "
                             f"{self.weights.shape} and {self.orders.shape}")  # fmt: skip
        if np.any(self.orders < 1) or np.any(self.orders > np.minimum(np.arange(n_steps) + 1, self.weights.shape[1])):
            raise ValueError(f"orders must lie in [1, min(k + 1, {self.weights.shape[1]})], got {self.orders}")
        self.scales = np.ones(n_steps) if scales is None else np.asarray(scales, dtype=np.float64).copy()
        self.offsets = np.zeros(n_steps) if offsets is None else np.asarray(offsets, dtype=np.float64).copy()
        if self.scales.shape != (n_steps,) or self.offsets.shape != (n_steps,):
            raise ValueError(
                f"scales and offsets need {n_steps} entries, got {self.scales.shape}, {self.offsets.shape}"
            )
        for label, arr in (("grid", self.grid), ("weights", self.weights), ("scales", self.scales),
                           ("offsets", self.offsets)):  # fmt: skip
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{label} must be finite, got {arr!r}")
        self.afs, self.denoise = bool(afs), bool(denoise)
        self.multistep_order = int(self.weights.shape[1])
        self.order = 1  # a fitted method has no asymptotic order; only its budget is meaningful
        self.report = dict(report or {})
        self.name = f"learned[{self.base or 'untrained'}, nfe={self.nfe(self.grid) + int(self.denoise)}]"
        # the eval times: the grid's own where the offset is 0 (the base's numbers), else the shifted level
        self._eval_times = [self._shifted(t, o) for t, o in zip(self.grid[:-1], self.offsets)]

    @classmethod
    def from_base(cls, sde, base, grid, *, denoise=True, report=None) -> LearnedSolver:
        """The untrained solver: ``base`` (a spec of the ``ipndm`` / ``ipndm_v`` / ``deis`` family) on ``grid``,
        the same numbers as ``sample(..., solver=base, grid=grid)``."""
        solver = get_solver(base)
        if not hasattr(solver, "weights") or not hasattr(solver, "step_order"):
            raise ValueError(f"base must be a solver of the ipndm / ipndm_v / deis family, got {base!r}")
        weights, orders = base_tables(solver, sde, grid)
        return cls(sde, base, grid, weights, orders, afs=solver.afs, denoise=denoise, report=report)

    def eval_time(self, k: int) -> float:
        """The time step ``k``'s score call is told: ``grid[k]`` itself, or the time of the noise level
        ``s_k exp(offsets[k])``."""
        return self._eval_times[k]

    def _shifted(self, t: float, offset: float) -> float:
        if offset == 0.0:
            return float(t)
        lam = float(self.sde.log_snr(float(t))) - offset  # s' = s exp(offset); sdekit's log_snr is -log s
        return float(self.sde.t_from_log_snr(lam))

    # -- the solver interface ---------------------------------------------------------------------------------
    @property
    def n_steps(self) -> int:
        return len(self.grid) - 1

    @property
    def fixed_grid(self) -> np.ndarray:
        """The times ``sample`` uses when it is given neither ``steps`` nor ``grid``."""
        return self.grid.copy()

    @property
    def nfe_budget(self) -> int:
        """Score evaluations of one ``sample`` with the final denoising it was fitted for."""
        return self.nfe(self.grid) + int(self.denoise)

    def nfe(self, grid, process=None) -> int:
        return len(grid) - 1 - int(self.afs)

    def check_process(self, process):
        sde = linear_sde_of(process, self.name)
        if not same_sde(sde, self.sde):
            raise ValueError(
                f"this learned solver was fitted for {self.sde!r}; it cannot integrate {sde!r} (another process"
                + (", or another trained schedule)" if repr(sde) == repr(self.sde) else ")")
            )

    def step(self, process, x, t, t_next, z, ctx):
        k = ctx.index
        if k == 0:
            if len(ctx.grid) != len(self.grid) or not np.allclose(ctx.grid, self.grid, rtol=1e-12, atol=0.0):
                raise ValueError(
                    f"a learned solver runs on its own grid of {self.n_steps} steps ({self.grid!r}); call sample "
                    f"without steps or grid (got {np.asarray(ctx.grid)!r}; in a diffusers pipeline a start after the "
                    "first step, image-to-image, runs part of the grid, which its fitted history weights do not cover)"
                )
            ctx.memory["learned"] = []
        hist = ctx.memory["learned"]
        alpha, sigma = coeffs(self.sde, t)
        alpha_n, _ = coeffs(self.sde, t_next)
        x_hat = x / alpha
        if self.afs and k == 0:
            s = sigma / alpha
            eps = x_hat / math.sqrt(1.0 + s * s)
        else:
            te = self.eval_time(k)
            if te == float(t):
                eps = -sigma * score_at(process, x, t)
            else:
                a_e, s_e = coeffs(self.sde, te)
                eps = -s_e * score_at(process, x_hat * a_e, te)
        ctx.denoised = x_hat - (sigma / alpha) * eps
        hist.insert(0, eps)
        del hist[self.multistep_order :]
        scale = float(self.scales[k])
        out = x_hat if scale == 1.0 else scale * x_hat
        for wj, ej in zip(self.weights[k, : self.orders[k]], hist):
            out = out + float(wj) * ej
        return alpha_n * out

    def __repr__(self):
        return (f"LearnedSolver(base={self.base!r}, sde={self.sde!r}, steps={self.n_steps}, "
                f"nfe_budget={self.nfe_budget}, denoise={self.denoise})")  # fmt: skip

    # -- files ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Everything :func:`load` needs, as JSON types."""
        return {
            "format": FORMAT,
            "sdekit_version": __version__,
            "sde": repr(self.sde),
            # a DDPM schedule (a diffusers scheduler's process) is its table: its repr gives only its length
            "sde_alphas_cumprod": self.sde.alphas_cumprod if isinstance(self.sde, DiscreteVPSDE) else None,
            "base": self.base,
            "nfe": self.nfe_budget,
            "denoise": self.denoise,
            "afs": self.afs,
            "grid": self.grid.tolist(),
            "weights": self.weights.tolist(),
            "orders": self.orders.tolist(),
            "scales": self.scales.tolist(),
            "offsets": self.offsets.tolist(),
            "report": self.report,
        }

    def save(self, path) -> None:
        """Write the solver to ``path`` as JSON (floats written exactly: a loaded solver gives the same numbers)."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1, default=_jsonable)


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {value!r} to JSON")


def load(path, sde=None) -> LearnedSolver:
    """The :class:`LearnedSolver` saved at ``path``. ``sde``: the SDE you will sample with; a different one (than
    the SDE it was fitted for) is refused with a ``ValueError`` naming both."""
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"path {str(path)!r} is not a saved learned solver (not JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"path {str(path)!r} is not a saved learned solver (format {FORMAT!r})")
    if data.get("sde_alphas_cumprod") is not None:
        fitted_sde = DiscreteVPSDE(alphas_cumprod=data["sde_alphas_cumprod"])
    else:
        fitted_sde = sde_from_repr(data["sde"])
    if sde is not None and not same_sde(sde, fitted_sde):
        raise ValueError(f"sde {sde!r} does not match the SDE this solver was fitted for, {fitted_sde!r}")
    tables = [data[k] for k in ("grid", "weights", "orders", "scales", "offsets")]
    solver = LearnedSolver(
        fitted_sde, data["base"], *tables, afs=data["afs"], denoise=data["denoise"], report=data.get("report")
    )
    if solver.nfe_budget != data["nfe"]:
        raise ValueError(f"path {str(path)!r}: the stored budget {data['nfe']} does not match its grid")
    return solver
