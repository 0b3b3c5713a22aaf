"""What one effect call came to, as the state machine sees it (no HTTP here: streams/effects.py
makes these from answers)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    OK = "ok"
    TRANSIENT = "transient"  # try again later: 5xx, 408, 429, timeout, connection error
    TERMINAL = "terminal"  # never succeeds as is: other 4xx, bad configuration


@dataclass(unsafe_hash=True)
class EffectResult:
    """(Made for every effect call: its own `__init__` is compiled, a dataclass's would run as
    Python; see `streams.core.decisions`.)"""

    outcome: Outcome
    message: str = ""
    retry_after_s: float | None = None

    def __init__(self, outcome: Outcome, message: str = "", retry_after_s: float | None = None) -> None:
        self.outcome = outcome
        self.message = message
        self.retry_after_s = retry_after_s
