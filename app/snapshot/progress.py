"""Progress reports from the engine to whoever runs it (CLI, job, test), at a bounded rate."""
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    phase: str          # "database", "files", "verify", "staging", "load", "swap", "done"
    done: int           # units done in this phase
    total: int | None   # units in this phase, when known
    unit: str           # "rows", "bytes", "files", "members"
    message: str = ""


class Reporter:
    """Wraps a callback: phase changes always go through, the rest at most every ``interval`` seconds."""

    def __init__(self, callback=None, interval=0.2):
        self.callback = callback
        self.interval = interval
        self.phase = None
        self.last = 0.0

    def __call__(self, phase, done, total, unit, message="", force=False):
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and phase == self.phase and now - self.last < self.interval:
            return
        self.phase, self.last = phase, now
        self.callback(ProgressEvent(phase, done, total, unit, message))
