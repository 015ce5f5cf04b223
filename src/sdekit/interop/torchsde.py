"""Interoperability with torchsde (Li et al. 2020, Kidger et al. 2021).

:func:`to_torchsde` wraps an sdekit process (a forward ``SDE``, a ``ReverseSDE`` or a ``ProbabilityFlowODE``)
as an object that ``torchsde.sdeint`` accepts: ``f(s, y)``, ``g(s, y)``, ``noise_type = "diagonal"``,
``sde_type = "ito"``. torchsde integrates forwards in time on states of shape ``(batch, channels)``; sdekit
samples backwards from ``T``. The wrapper handles both:

* **time** -- a reverse-time process runs in ``s = T - t``: ``y(s) = x(T - s)`` solves
  ``dy = -f_rev(y, T - s) ds + g(T - s) dW_s`` (the reverse drift changes sign, the diffusion does not: the
  Brownian increments of ``dW_bar`` over ``[t - h, t]`` are those of a forward Wiener process in ``s``). A
  forward SDE runs in ``s = t``. :meth:`TorchsdeProcess.ts` converts sdekit times to torchsde times.
* **shape** -- states ``(n, *event_shape)`` are flattened to ``(n, prod(event_shape))``.

The score receives ``t`` of shape ``(n,)`` in ``y``'s dtype on ``y``'s device, as everywhere in sdekit.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..sdes import SDE, ProbabilityFlowODE, ReverseSDE
from ..validation import boolean

__all__ = ["to_torchsde", "TorchsdeProcess"]


class TorchsdeProcess(torch.nn.Module):
    """A process in torchsde's interface (see :func:`to_torchsde`).

    Attributes
    ----------
    process : SDE, ReverseSDE or ProbabilityFlowODE
    reverse : bool
        True when torchsde time ``s`` runs as ``T - t``.
    event_shape : tuple or None
        Shape of one sample; ``None`` means the torchsde state is the sdekit state (``(n, d)``).
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, process, reverse: bool, event_shape=None):
        super().__init__()
        self.process = process
        self.reverse = reverse
        self.event_shape = event_shape
        self.T = float(process.T)
        score = getattr(process, "score", None)
        if isinstance(score, torch.nn.Module):
            self.score_module = score  # registered, so torchsde's adjoint sees the parameters
        elif isinstance(getattr(score, "fn", None), torch.nn.Module):
            self.score_module = score.fn

    # -- times ---------------------------------------------------------------------------------------------
    def ts(self, times):
        """sdekit times (e.g. ``[T, ..., t_end]``) as torchsde times ``s`` (increasing for a sampling run)."""
        t = times if isinstance(times, torch.Tensor) else torch.as_tensor(np.asarray(times, dtype=np.float64))
        return self.T - t if self.reverse else t

    def t_of(self, s):
        """The sdekit time of a torchsde time ``s``."""
        return self.T - s if self.reverse else s

    # -- torchsde interface ----------------------------------------------------------------------------------
    def _unflatten(self, y):
        return y if self.event_shape is None else y.reshape((y.shape[0],) + tuple(self.event_shape))

    def _time(self, s, y):
        s = torch.as_tensor(s, dtype=y.dtype, device=y.device)
        return self.t_of(s).reshape(1).expand(y.shape[0]).contiguous()

    def f(self, s, y):
        """Drift in torchsde time, shape like ``y``."""
        x = self._unflatten(y)
        drift = self.process.drift(x, self._time(s, y))
        drift = -drift if self.reverse else drift
        return drift.reshape(y.shape)

    def g(self, s, y):
        """Diagonal diffusion in torchsde time, shape like ``y`` (zero for a probability-flow ODE)."""
        x = self._unflatten(y)
        g = self.process.diffusion(x, self._time(s, y))
        if g is None:
            return torch.zeros_like(y)
        return torch.broadcast_to(g, x.shape).reshape(y.shape)


def to_torchsde(process, *, reverse: bool | None = None, event_shape=None) -> TorchsdeProcess:
    """Wrap ``process`` for ``torchsde.sdeint`` (and ``sdeint_adjoint`` when the score is an ``nn.Module``).

    Parameters
    ----------
    process : SDE, ReverseSDE or ProbabilityFlowODE
        A ``ReverseSDE`` always runs in reversed time ``s = T - t``; a forward ``SDE`` in ``s = t``; a
        probability-flow ODE in reversed time by default (sampling), or forwards with ``reverse=False``
        (encoding data into latents).
    reverse : bool, optional
        Only for a ``ProbabilityFlowODE``.
    event_shape : tuple, optional
        Shape of one sample when it is not 1-D; torchsde then works on ``y`` of shape ``(n, prod(event_shape))``.

    Example
    -------
    >>> proc = to_torchsde(VPSDE().reverse(score))                          # doctest: +SKIP
    >>> ys = torchsde.sdeint(proc, x_T, proc.ts([1.0, 1e-3]), method="euler", dt=1e-3)  # doctest: +SKIP
    >>> x = ys[-1]                                                           # doctest: +SKIP
    """
    if not isinstance(process, (SDE, ReverseSDE, ProbabilityFlowODE)):
        raise TypeError(f"process must be an SDE, ReverseSDE or ProbabilityFlowODE, got {type(process).__name__}")
    if reverse is not None and not isinstance(process, ProbabilityFlowODE):
        kind = "a ReverseSDE runs in reversed time" if isinstance(process, ReverseSDE) else "an SDE runs forwards"
        raise ValueError(f"reverse applies to a ProbabilityFlowODE only ({kind}); got reverse={reverse!r}")
    reverse = None if reverse is None else boolean("reverse", reverse)
    if isinstance(process, ReverseSDE):
        rev = True
    elif isinstance(process, SDE):
        rev = False
    else:
        rev = True if reverse is None else reverse
    if event_shape is not None:
        try:
            event_shape = tuple(int(s) for s in event_shape)
        except TypeError:
            raise TypeError(f"event_shape must be a tuple of ints, got {event_shape!r}") from None
        if not event_shape or any(s <= 0 for s in event_shape) or not math.prod(event_shape):
            raise ValueError(f"event_shape must be a non-empty tuple of positive sizes, got {event_shape!r}")
    return TorchsdeProcess(process, rev, event_shape)
