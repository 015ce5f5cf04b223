"""Comparing integrators on analytic densities: error against NFE, exact laws, convergence orders.

:func:`compare` is the study behind ``sdekit compare``. For each solver and NFE budget it samples from an
analytic density (whose noised marginals ``p_t`` and score are exact) and measures the error at ``t_end``:

* **ODE solvers** (probability-flow ODE): the RMS endpoint distance ``sqrt(mean_i |x_i - x_i^ref|^2)`` to the
  exact flow of the *same* starting points. For a Gaussian the flow is closed-form (``Gaussian.flow``); for a
  mixture it is a reference solve by scipy's DOP853 at ``rtol = atol = 1e-10`` (its own error is far below the
  errors reported, which are only fitted above ``1e-8``).
* **SDE solvers** (reverse SDE): a distance between the law of the solver's output and the exact ``p_{t_end}``.
  For a Gaussian density and a solver that is affine in the state, the law of the output is itself Gaussian and
  computed exactly by :func:`exact_law`; the error is then the exact W2 (no Monte Carlo noise). Otherwise it is
  the MMD between the ``n`` solver samples and the exact ``p_{t_end}`` (:func:`sdekit.metrics.mmd_to_mixture`:
  the reference side is a closed-form Gaussian integral, so only the solver's sample is random; reported as
  the signed root ``sign(MMD^2) sqrt(|MMD^2|)`` of the unbiased estimate, which scales like the law error),
  or a chosen metric of :data:`COMPARE_METRICS` (two-sample metrics against exact samples, or one added with
  :func:`register_metric`). The metric's noise floor (its value on exact samples) is reported next to it.

All runs start from exact samples of ``p_T`` (not the prior), so the errors are the integrators' alone and
do not include the prior mismatch ``p_T != N(0, prior_std^2 I)``; no final denoising step is applied.

Steps per run are the most whose ``solver.nfe(grid)`` fits the budget (``nfe // solver.nfe_per_step`` for most
solvers; ``restart`` spends extra evaluations on its restarts), so every solver spends (at most) the same number
of score evaluations; the NFE actually used is recorded.

Layout (private modules, the public names are the ones below):

* ``_problems`` -- :data:`DENSITIES` (the analytic presets), :data:`SDES`, defaults, :func:`make_density`,
  :func:`make_sde`, :func:`fixed_step_solvers`;
* ``_exact_law`` -- :func:`exact_law`, the exact output law of an affine solver on Gaussian data;
* ``_orders`` -- :func:`fit_order`;
* ``_references`` -- the reference probability-flow map of the ODE rows;
* ``_metrics`` -- the SDE metric registry: :data:`COMPARE_METRICS`, :func:`register_metric`;
* ``_result`` -- :class:`CompareResult` (table, report, CSV, JSON, PNG);
* ``_plan`` -- the checked arguments of one comparison and its runs (one per solver and process);
* ``_compare`` -- :func:`compare`: one cell (a solve at one budget and its error), the order fits, the study;
* ``_cfmmd`` -- the default SDE estimator ``mmd_cf`` (frequency-domain MMD to the exact mixture, linear in n);
* ``_model`` -- :func:`compare_model`: the workbench on a learned score (``sdekit compare --model``);
* ``_peers`` -- k-diffusion's samplers and diffusers' schedulers as rows (``--peers``);
* ``_plot`` -- the work-precision plot: styles per solver and family, hollow unresolved points;
* ``_study`` -- :func:`study`.

Adding a density: subclass :class:`sdekit.analytic.AnalyticDensity` (see :mod:`sdekit.analytic.base`) and pass
an instance, or register a named factory with :func:`sdekit.analytic.register_density`. Adding a metric:
:func:`register_metric` (see :mod:`sdekit.bench._metrics`).
"""

from __future__ import annotations

from ._compare import compare
from ._exact_law import exact_law
from ._metrics import COMPARE_METRICS, DEFAULT_METRIC, CompareMetric, MetricTarget, get_metric, register_metric
from ._model import MODEL_N, MODEL_NFE, MODEL_SOLVERS, compare_model, load_model
from ._orders import fit_order
from ._problems import (
    DEFAULT_GRID,
    DEFAULT_N,
    DEFAULT_NFE,
    DENSITIES,
    SDE_NFE_MAX,
    SDES,
    fixed_step_solvers,
    make_density,
    make_sde,
)
from ._result import CompareResult
from ._study import study

__all__ = [
    "DENSITIES",
    "SDES",
    "DEFAULT_NFE",
    "COMPARE_METRICS",
    "DEFAULT_GRID",
    "DEFAULT_METRIC",
    "DEFAULT_N",
    "SDE_NFE_MAX",
    "compare",
    "compare_model",
    "load_model",
    "MODEL_NFE",
    "MODEL_N",
    "MODEL_SOLVERS",
    "study",
    "CompareResult",
    "exact_law",
    "fit_order",
    "fixed_step_solvers",
    "make_density",
    "make_sde",
    "register_metric",
    "get_metric",
    "CompareMetric",
    "MetricTarget",
]
