"""Observed convergence orders: :func:`fit_order`."""

from __future__ import annotations

import numpy as np

__all__ = ["fit_order"]


def fit_order(nfe, err, floor: float = 0.0, last: int | None = 3) -> float:
    """Observed order ``p`` in ``err ~ C NFE^{-p}``: least-squares slope of ``log err`` on ``log NFE``.

    Only points with a finite error above ``floor`` are used (an error at the Monte Carlo or reference floor
    carries no order information), and of those the ``last`` ones with the largest NFE (the asymptotic regime;
    ``None`` uses all); ``nan`` with fewer than two such points.
    """
    nfe = np.asarray(nfe, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    ok = np.isfinite(err) & (err > floor) & (nfe > 0)
    if ok.sum() < 2:
        return float("nan")
    x, y = np.log(nfe[ok]), np.log(err[ok])
    if last is not None:
        keep = np.argsort(x)[-max(int(last), 2) :]
        x, y = x[keep], y[keep]
    slope = np.polyfit(x, y, 1)[0]
    return float(-slope)
