"""Whether the order agent runs, and stopping the worker with a non-zero exit when it cannot.

Faust's own handling of a crashed agent (`app._crash`) leaves the process up: the worker leaves
the group, yet `/health` and `/ready` went on answering 200, so no supervisor restarted it. Here a
dead agent marks the worker not ready at once and stops it through mode's own shutdown (so tables
are closed and the producer flushed), with the agent's exception as the worker's crash reason:
mode re-raises it after stopping, and the process exits 1.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

import mode

log = logging.getLogger(__name__)


#: Past the shutdown timeout, this long more for the rest of the stop (tables, producer) before
#: the process is ended regardless.
HARD_EXIT_GRACE_S = 15.0
EX_SOFTWARE = 70


class AgentState:
    """Set by the agent: `running` from its first batch loop until it ends for any reason."""

    def __init__(self) -> None:
        self.running = False
        self.failure: BaseException | None = None


def arm_hard_exit(seconds: float) -> None:
    """End the process after `seconds` unless it ended first: a stop must be bounded even when
    something in Faust's or mode's shutdown hangs. Armed once, when the stop begins."""
    global _armed
    if _armed:
        return
    _armed = True

    def hard_exit() -> None:
        log.critical("the worker did not stop within %.0fs; exiting now", seconds)
        logging.shutdown()
        os._exit(EX_SOFTWARE)
    timer = threading.Timer(seconds, hard_exit)
    timer.daemon = True
    timer.start()


_armed = False


def stop_worker(app: Any, reason: BaseException) -> None:
    """Stop the whole worker, to exit non-zero with `reason` (a supervisor restarts it)."""
    root = app.beacon.root
    worker = root.data if root is not None else None
    if not isinstance(worker, mode.Worker):  # not under `faust worker` (tests): crash the app
        app._crash(reason)
        return
    log.critical("stopping the worker after a fatal error: %r", reason)
    if worker.crash_reason is None:
        worker.crash_reason = reason  # mode re-raises it once stopped: exit code 1
    worker._schedule_shutdown(signal.SIGTERM)
