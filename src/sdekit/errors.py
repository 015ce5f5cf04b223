"""Exceptions raised by sdekit."""

from __future__ import annotations

__all__ = ["NonFiniteError"]


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


#: Older name of the wrong-kind error. sdekit now raises a plain ``TypeError`` for an argument of the wrong kind
#: (``steps=2.5``, ``n="3"``), and ``ValueError`` for a value out of range; this alias keeps ``except`` clauses
#: written against the old name working.
ArgumentTypeError = TypeError
