"""Exceptions raised by sdekit."""

from __future__ import annotations

__all__ = ["NonFiniteError", "ArgumentTypeError"]


class NonFiniteError(FloatingPointError):
    """A solve produced NaN or infinite values; ``step`` and ``t`` say where."""

    def __init__(self, step: int, t: float, message: str | None = None):
        self.step = step
        self.t = t
        super().__init__(
            message
            or f"non-finite values in the state after step {step} (t = {t!r}); "
            "try more steps, another solver or grid, or check the score (pass check_finite=False to skip this check)"
        )


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong kind (a string where a number is wanted, a number where a flag is wanted).

    Both a ``TypeError`` and a ``ValueError``, so code that catches either of them for bad input catches it;
    the message names the argument and the value (:mod:`sdekit.validation`)."""
