"""Stopping in time: a session time budget and SIGTERM / SIGINT handling.

Kaggle ends a session after 12 hours without warning, and sends SIGTERM when a user stops it.
Training loops ask `RunBudget.should_stop()` at every step boundary; the first request to stop
(time nearly up, or a signal) lets the loop finish its step, save a resumable checkpoint and exit
cleanly instead of dying mid-write.
"""

from __future__ import annotations

import os
import signal
import time

SESSION_START_ENV = "INTERCEPTOR_SESSION_START"  # set by run_all.sh: the chain's start (epoch seconds)


class RunBudget:
    """`time_budget_s` counted from the session start ($INTERCEPTOR_SESSION_START, else now);
    `margin_s` is kept in reserve for the final save. Use as a context manager to catch SIGTERM /
    SIGINT as a stop request (handlers are restored on exit)."""

    def __init__(self, time_budget_s: float | None = None, margin_s: float = 300.0, start: float | None = None):
        self.time_budget_s, self.margin_s = time_budget_s, margin_s
        self.start = start if start is not None else float(os.environ.get(SESSION_START_ENV, time.time()))
        self.signal_received: str | None = None
        self._old = {}

    def elapsed(self) -> float:
        return time.time() - self.start

    def time_left(self) -> float:
        return float("inf") if self.time_budget_s is None else self.time_budget_s - self.elapsed()

    def should_stop(self) -> str | None:
        """Why the loop must stop now ('signal SIGTERM', 'time budget'), or None."""
        if self.signal_received:
            return f"signal {self.signal_received}"
        if self.time_left() <= self.margin_s:
            return "time budget"
        return None

    def _handle(self, signum, frame):
        self.signal_received = signal.Signals(signum).name

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside some notebook runners): poll time only
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
        return False
