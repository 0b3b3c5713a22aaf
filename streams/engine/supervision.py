"""Whether the order agent runs, and stopping the worker with a non-zero exit when it cannot.

Faust's own handling of a crashed agent (`app._crash`) leaves the process up: the worker leaves
the group, yet `/health` and `/ready` went on answering 200, so no supervisor restarted it. Here a
dead agent marks the worker not ready at once and stops it through mode's own shutdown (so tables
are closed and the producer flushed), with the agent's exception as the worker's crash reason:
mode re-raises it after stopping, and the process exits 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
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


def stop_worker(app: Any, reason: BaseException, hard_exit_after_s: float | None = None) -> None:
    """Stop the whole worker, to exit non-zero with `reason` (a supervisor restarts it); the
    process ends after `hard_exit_after_s` (default: the shutdown timeout and a grace) at most."""
    root = app.beacon.root
    worker = root.data if root is not None else None
    if not isinstance(worker, mode.Worker):  # not under `faust worker` (tests): crash the app
        app._crash(reason)
        return
    log.critical("stopping the worker after a fatal error: %r", reason)
    if worker.crash_reason is None:
        worker.crash_reason = reason  # mode re-raises it once stopped: exit code 1
    if hard_exit_after_s is None:
        hard_exit_after_s = float(getattr(app, "shutdown_timeout_s", 30.0)) + HARD_EXIT_GRACE_S
    arm_hard_exit(hard_exit_after_s)
    worker._schedule_shutdown(signal.SIGTERM)


def is_ready(app: Any) -> bool:
    """The worker's readiness (`/ready`): its agent runs, no rebalance is under way, its tables
    are recovered, and it holds partitions."""
    recovery = getattr(app.tables, "recovery", None)
    state = getattr(app, "agent_state", None)
    return bool(state is not None and state.running and not app.rebalancing
                and recovery is not None and recovery.completed.is_set()
                and app.assignor.assigned_actives())


def watch_for_stuck(app: Any, limit_s: float, stop: Any, every_s: float = 2.0,
                    describe: Callable[[], str] | None = None, describe_after_s: float = 45.0) -> None:
    """Run `StuckWatch` in a thread of its own, from the worker's start: Faust starts the app's
    timers only once the first rebalance is done, and a chaos run left restarted workers stuck in
    exactly that first rebalance. When stuck: `stop()` on the event loop, and a hard exit 15 s
    later should the stop hang (or the loop not answer). A rebalance or recovery longer than
    `describe_after_s` is described once (what `describe()` says, run on the event loop)."""
    if limit_s <= 0 or getattr(app, "_orderflow_stuck_watch", False):
        return
    app._orderflow_stuck_watch = True
    watch = StuckWatch(limit_s)
    long_one = StuckWatch(describe_after_s)

    def report() -> None:
        assert describe is not None
        try:
            log.warning("in a rebalance or recovery for over %.0fs; waiting on:\n%s",
                        describe_after_s, describe())
        except Exception as exc:  # a diagnostic must not harm the worker
            log.warning("in a rebalance or recovery for over %.0fs (not described: %r)",
                        describe_after_s, exc)

    def run() -> None:
        described = False
        while True:
            time.sleep(every_s)
            try:
                rebalancing = in_rebalance(app)
                stuck = watch.stuck(rebalancing)
                long = long_one.stuck(rebalancing)
            except Exception as exc:  # read from another thread: a torn read now and then
                log.debug("stuck watch: %r", exc)
                continue
            if long and not described and describe is not None:
                described = True
                with contextlib.suppress(Exception):
                    app.loop.call_soon_threadsafe(report)
            elif not rebalancing:
                described = False
            if stuck:
                log.critical("in a rebalance or recovery for over %.0fs: stopping the worker", limit_s)
                arm_hard_exit(HARD_EXIT_GRACE_S)
                with contextlib.suppress(Exception):  # the hard exit ends it if this cannot
                    app.loop.call_soon_threadsafe(stop)
                return
    threading.Thread(target=run, name="stuck-watch", daemon=True).start()
    log.info("stuck watch: a rebalance or recovery longer than %.0fs stops the worker", limit_s)


def in_rebalance(app: Any) -> bool:
    """True while a rebalance or a table recovery is under way (or has not finished yet)."""
    recovery = getattr(app.tables, "recovery", None)
    return bool(app.rebalancing or recovery is None or not recovery.completed.is_set())


class StuckWatch:
    """A worker in a rebalance or a recovery for longer than `limit_s` without end (seen in chaos
    runs: a worker assigned partitions just as its broker was SIGKILLed went silent for good, out
    of the group while answering /health) stops with exit 1, for its supervisor to start it
    afresh. The limit must exceed the longest recovery expected (a cold start included)."""

    def __init__(self, limit_s: float, clock: Any = None) -> None:
        self.limit_s = limit_s
        self._clock = clock or time.monotonic
        self._since: float | None = None

    def stuck(self, rebalancing: bool) -> bool:
        """Feed whether a rebalance or recovery is under way; True once it lasted past the limit."""
        if not rebalancing or self.limit_s <= 0:
            self._since = None
            return False
        now = self._clock()
        if self._since is None:
            self._since = now
        return now - self._since > self.limit_s
