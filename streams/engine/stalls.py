"""A watch on the event loop: when one step holds it longer than a limit, log where it is.

A worker whose loop is held answers nothing (`/health` included), sends no heartbeat and commits
nothing; held longer than the session timeout, it is thrown out of its group. The loop bumps a
timestamp every 20 ms; a thread checks it, and when it is older than ORDERFLOW_STALL_REPORT_MS
(0: off) logs the loop thread's stack once per stall, so the log says what held it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback

log = logging.getLogger(__name__)
BEAT_S = 0.02


_watched: set[int] = set()


def watch_stalls(loop: asyncio.AbstractEventLoop, report_after_s: float) -> None:
    """Start the beat on `loop` and the watching thread (daemon), once per loop."""
    if report_after_s <= 0 or id(loop) in _watched:
        return
    _watched.add(id(loop))
    last = [time.monotonic()]
    loop_thread = threading.get_ident()

    def beat() -> None:
        last[0] = time.monotonic()
        loop.call_later(BEAT_S, beat)

    loop.call_soon_threadsafe(beat)

    def watch() -> None:
        reported = 0.0
        while True:
            time.sleep(BEAT_S)
            held = time.monotonic() - last[0]
            if held > report_after_s and last[0] != reported:
                reported = last[0]
                frame = sys._current_frames().get(loop_thread)
                stack = "".join(traceback.format_stack(frame)[-12:]) if frame else "(no frame)"
                log.warning("the event loop is held for %.0f ms so far, at:\n%s", held * 1000, stack)

    threading.Thread(target=watch, name="orderflow-stall-watch", daemon=True).start()
