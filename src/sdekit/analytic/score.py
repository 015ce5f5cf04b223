"""The score callable of an analytic density: :class:`AnalyticScore`."""

from __future__ import annotations

from ._common import check_sde, check_x

__all__ = ["AnalyticScore"]


class AnalyticScore:
    """The exact score ``s(x, t) = grad_x log p_t(x)`` of an analytic density under a linear SDE.

    Call it as ``score(x, t)`` with ``x`` of shape ``(n, d)`` (numpy array or torch tensor) and ``t`` a float or
    an ``(n,)`` array; the result has ``x``'s shape, library, dtype and device. It checks ``x`` and calls the
    density's hooks ``exact_score``, ``score_divergence`` and ``score_jvp`` (see
    :class:`sdekit.analytic.AnalyticDensity`).

    Attributes
    ----------
    density : AnalyticDensity
        The data law ``p_0`` (samplers and the fused numba backend read its parameters from here, through
        ``density.mixture_params()``).
    sde : LinearSDE
        The forward process that defines ``p_t``.
    event_shape : tuple
        ``(d,)``.
    """

    __slots__ = ("density", "sde", "event_shape")

    def __init__(self, density, sde):
        check_sde(sde)
        self.density = density
        self.sde = sde
        self.event_shape = density.event_shape

    def __call__(self, x, t):
        check_x(x, self.density.dim)
        return self.density.exact_score(x, t, self.sde)

    def __repr__(self):
        return f"AnalyticScore({self.density!r}, {self.sde!r})"

    # -- derivatives of the score (used by the likelihood ODE) --------------------------------------------
    def divergence(self, x, t):
        """Exact trace of the score's Jacobian ``tr grad_x s(x, t)``, shape ``(n,)`` (numpy or torch)."""
        check_x(x, self.density.dim)
        return self.density.score_divergence(x, t, self.sde)

    def jvp(self, x, t, w):
        """Jacobian-vector product ``grad_x s(x, t) w`` for ``w`` like ``x``, exact (the Jacobian is symmetric)."""
        check_x(x, self.density.dim)
        return self.density.score_jvp(x, t, self.sde, w)
