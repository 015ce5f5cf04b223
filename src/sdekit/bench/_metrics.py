"""The registry of reverse-SDE error metrics of :func:`sdekit.bench.compare` (``--metric`` of the CLI).

A metric measures how far the ``n`` samples a solver produced at ``t_end`` are from the exact ``p(t_end)`` of
the density. It is used for the SDE rows whose exact law :func:`sdekit.bench.exact_law` does not give. Each
record (:class:`CompareMetric`) carries everything ``compare`` needs:

* ``build(target) -> fn``: the metric function ``fn(x) -> float`` for one problem (a :class:`MetricTarget`:
  density, SDE, ``t_end``, ``n``, seed and, when ``ref_factor > 0``, ``ref_factor * n`` exact reference
  samples from :meth:`MetricTarget.reference_samples`);
* ``ref_factor``: exact reference samples per solver sample a two-sample metric compares with (``0``: none);
* ``description`` and ``describe(target)``: one line for ``--help`` and the report's sentence;
* the Monte Carlo noise floor: ``fn`` on fresh exact samples of ``p(t_end)`` (``floor_repeats`` of them,
  seeds from ``seed + 2``); ``0`` repeats for a metric without one. A metric function with a method
  ``exact_floor(n) -> NoiseFloor`` gives its floor exactly instead (``mmd_cf``).
* sequential metrics (``fn.sums(x)``, ``fn.value(sums, n)``, ``fn.resolution(n)``, as
  :class:`~sdekit.bench._cfmmd.CFMMD` behind ``mmd_cf``):
  ``compare`` accumulates their statistics over batches and doubles a cell's samples until it is resolved.

``compare`` builds the function and its floor on the first row that needs them. Adding a metric is one call,
``register_metric(name, build, ...)``, from anywhere: ``compare(metric=name)`` and ``sdekit compare --metric
name`` accept it with no other edit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..metrics import SAMPLE_METRICS, NoiseFloor, component_bandwidth, mmd_to_mixture, noise_floor, sliced_w2_to
from ..validation import integer_at_least

__all__ = [
    "COMPARE_METRICS",
    "DEFAULT_METRIC",
    "CompareMetric",
    "MetricTarget",
    "get_metric",
    "register_metric",
]

#: Default SDE metric of :func:`compare` when the exact law is not available: the frequency-domain MMD to the exact
#: ``p(t_end)`` (:mod:`sdekit.bench._cfmmd`), linear in ``n``, whose cells grow their samples until resolved.
DEFAULT_METRIC = "mmd_cf"

#: SDE metrics of :func:`compare` by name (registration order): the exact-reference MMD (default) and the
#: two-sample metrics of :data:`sdekit.metrics.SAMPLE_METRICS`; add to it with :func:`register_metric`.
COMPARE_METRICS: dict = {}


@dataclass(frozen=True)
class MetricTarget:
    """One problem of a metric: the exact ``p(t_end)`` of ``density`` under ``sde``, for ``n`` solver samples."""

    density: object
    sde: object
    t_end: float
    n: int
    seed: int
    n_reference: int = 0

    def exact_samples(self, size: int, seed: int) -> np.ndarray:
        """``size`` exact samples of ``p(t_end)`` drawn with ``seed``."""
        return self.density.sample(size, seed=seed, t=self.t_end, sde=self.sde)

    def reference_samples(self) -> np.ndarray:
        """The ``n_reference`` exact reference samples (seed ``seed + 1``, disjoint from the start points')."""
        return self.exact_samples(self.n_reference, self.seed + 1)


@dataclass(frozen=True)
class CompareMetric:
    """A registered SDE metric of :func:`compare` (see the module docstring)."""

    name: str
    build: Callable
    description: str = ""
    ref_factor: int = 0
    describe: Callable | None = None
    floor_repeats: int = 8

    def target(self, density, sde, t_end: float, n: int, seed: int) -> MetricTarget:
        """The :class:`MetricTarget` of one ``compare`` problem (with this metric's reference size)."""
        return MetricTarget(density, sde, t_end, n, seed, self.ref_factor * n)

    def report_line(self, target: MetricTarget) -> str:
        """The report's description of the metric on ``target``."""
        if self.describe is not None:
            return self.describe(target)
        if self.ref_factor:
            return f"{self.name} between the n solver samples and {target.n_reference} exact samples of p(t_end)"
        return f"{self.name} between the n solver samples and the exact p(t_end)"

    def floor(self, fn, target: MetricTarget) -> NoiseFloor | None:
        """The metric's Monte Carlo noise floor at ``target.n``: ``fn`` on fresh exact samples (None: no floor)."""
        if hasattr(fn, "exact_floor"):
            return fn.exact_floor(target.n)
        if not self.floor_repeats:
            return None
        seed = target.seed + 2
        return noise_floor(fn, target.exact_samples, target.n, repeats=self.floor_repeats, seed=seed, reference=())


def register_metric(
    name: str, build, *, description: str = "", ref_factor: int = 0, describe=None, floor_repeats: int = 8
) -> CompareMetric:
    """Register an SDE metric of :func:`compare` under ``name`` (a new name) and return its record.

    ``build(target) -> fn`` makes the metric function ``fn(x (n, d)) -> float`` for a :class:`MetricTarget`;
    with ``ref_factor > 0`` the target offers ``ref_factor * n`` exact reference samples
    (``target.reference_samples()``). ``describe(target) -> str`` overrides the report's default sentence.
    ``floor_repeats``: exact-sample repeats of the noise floor (``0``: no floor).
    """
    if not isinstance(name, str) or not name or name in COMPARE_METRICS:
        raise ValueError(f"metric name {name!r} is empty or registered twice")
    if not callable(build):
        raise TypeError(f"build must be callable (build(target) -> metric function), got {build!r}")
    record = CompareMetric(
        name=name,
        build=build,
        description=str(description),
        ref_factor=integer_at_least("ref_factor", ref_factor, 0),
        describe=describe,
        floor_repeats=integer_at_least("floor_repeats", floor_repeats, 0),
    )
    COMPARE_METRICS[name] = record
    return record


def get_metric(name) -> CompareMetric:
    """The registered record of ``name``; ``ValueError`` listing the valid names otherwise."""
    record = COMPARE_METRICS.get(name) if isinstance(name, str) else None
    if record is None:
        raise ValueError(f"unknown metric {name!r}; valid metrics: {sorted(COMPARE_METRICS)}")
    return record


# ----------------------------------------------------------------------------------------------------------
# the built-in metrics
# ----------------------------------------------------------------------------------------------------------
def _bandwidth(target):
    return component_bandwidth(target.density, target.t_end, target.sde)


def _build_mmd_exact(target):
    h = _bandwidth(target)
    density, t_end, sde = target.density, target.t_end, target.sde

    def metric_fn(y):
        v = mmd_to_mixture(y, density, h, t=t_end, sde=sde)
        return math.copysign(math.sqrt(abs(v)), v)

    return metric_fn


def _describe_mmd_exact(target):
    return (
        f"MMD (Gaussian kernel, bandwidth h={_bandwidth(target):.3g} = narrowest component std) between the n solver "
        "samples and the exact p(t_end) in closed form; shown as sign(MMD^2) sqrt(|MMD^2|) of the unbiased estimate"
    )


def _two_sample(name):
    def build(target):
        # exact samples are cheap, so a reference larger than the solver's sample lowers the floor, which is the
        # metric between fresh exact n-samples and it
        reference = target.reference_samples()
        if name == "sliced_w2":
            return sliced_w2_to(reference)  # the reference's projections sorted once
        two_sample = SAMPLE_METRICS[name]
        return lambda y: two_sample(y, reference)

    return build


_CF_CACHE: dict = {}


def _cf_estimator(target):
    """The :class:`~sdekit.bench._cfmmd.CFMMD` of ``target`` (built once for the report line and the metric)."""
    from ._cfmmd import CFMMD

    key = id(target)
    if key not in _CF_CACHE or _CF_CACHE[key][0] is not target:
        _CF_CACHE.clear()  # one problem at a time; the target is kept alive with its estimator
        _CF_CACHE[key] = (target, CFMMD(target.density.mixture_params(target.t_end, target.sde), _bandwidth(target)))
    return _CF_CACHE[key][1]


def _build_mmd_cf(target):
    return CFMMDMetric(_cf_estimator(target))


class CFMMDMetric:
    """:class:`~sdekit.bench._cfmmd.CFMMD` as a sequential ``compare`` metric, with its exact floor."""

    def __init__(self, est):
        self.est = est

    def __call__(self, x) -> float:
        return self.est(x)

    def sums(self, x):
        return self.est.sums(x)

    def value(self, sums, n: int) -> float:
        from ._cfmmd import signed_root

        return signed_root(self.est.mmd2(sums, n))

    def resolution(self, n: int) -> float:
        return self.est.resolution(n)

    def exact_floor(self, n: int) -> NoiseFloor:
        # the estimate is unbiased (mean 0 on exact samples); the floor is stated in the units shown (signed roots),
        # as mean 0 and a std whose "mean + 2 std" is the resolution sqrt(2 sd(MMD^2))
        return NoiseFloor(0.0, 0.5 * self.est.resolution(n), 0)


def _describe_mmd_cf(target):
    from ._cfmmd import STOP_FACTOR

    est = _cf_estimator(target)
    sym = f"averaged over the density's {est.G} symmetries, " if est.G > 1 else ""
    return (
        f"MMD to the exact p(t_end) in the frequency domain: (1/J) sum_j |phi_solver(w_j) - phi_exact(w_j)|^2 over "
        f"J={est.J} random frequencies w_j ~ N(0, I/h^2), h={est.bandwidth:.3g} (narrowest component std), {sym}"
        "unbiased, cost linear in n, phi_exact in closed form; shown as sign(MMD^2) sqrt(|MMD^2|). Floor: mean 0, "
        f"exact null sd; resolution {est.resolution(target.n):.2e} at n={target.n} (falls like n^-1/2); each cell "
        f"doubles its samples until its error exceeds {STOP_FACTOR} resolutions or n_max"
    )


register_metric(
    "mmd_cf",
    _build_mmd_cf,
    description="MMD to the exact p(t_end) in the frequency domain (closed-form characteristic function, linear in n, "
    "cells grow their samples until resolved); the default",
    describe=_describe_mmd_cf,
    floor_repeats=0,
)
register_metric(
    "mmd_exact",
    _build_mmd_exact,
    description="MMD to the exact p(t_end), closed form (signed root of the unbiased MMD^2)",
    describe=_describe_mmd_exact,
)
# exact reference samples per solver sample: 4 for sliced W2 (O(n log n)); 1 for the O(n m) kernel metrics
for _name, _factor, _what in (
    ("sliced_w2", 4, "sliced W2"),
    ("mmd", 1, "two-sample MMD (median-heuristic bandwidth)"),
    ("energy", 1, "energy distance"),
):
    register_metric(_name, _two_sample(_name), description=f"{_what} to exact samples of p(t_end)", ref_factor=_factor)
del _name, _factor, _what
