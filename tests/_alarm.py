"""A time limit for one fuzz example: a hang is a failure, not a stuck test run (SIGALRM, main thread, POSIX)."""

from __future__ import annotations

import signal


class Alarm:
    """``with Alarm(seconds):`` raises ``AssertionError`` in the block once ``seconds`` have passed."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def __enter__(self):
        def fail(*_):
            raise AssertionError(f"an example ran over {self.seconds} s")

        self.old = signal.signal(signal.SIGALRM, fail)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)
        return False
