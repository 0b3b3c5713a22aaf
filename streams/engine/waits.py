"""What a worker stuck in a rebalance or a recovery is waiting for, in one log record.

A recovery that got no changelog record for minutes left only Faust's "No event received for
active tp" lines: nothing said whether the partitions were fetched at all, whether the drain loop
was waiting somewhere, or what aiokafka held for them. This report showed the records fetched (the
positions past them) and never delivered, which found the cause (streams/engine/transport.py, "No
fetched record dropped for good"). `describe_waits`
puts that in one report: Faust's flow and partition sets, aiokafka's fetch state of every assigned
partition (position, paused, buffered records, reset pending), and where the drain loop and the
recovery's tasks are awaiting. Read from the event loop; aiokafka's state belongs to the consumer's
thread, so it is read as it is at that moment (diagnostics only, nothing is changed).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

#: coroutines whose stacks tell where the consumer and the recovery wait
WATCHED_COROUTINES = ("_drain_messages", "_slurp_changelogs", "_restart_recovery", "_process",
                      "_fetch_requests_routine")


def describe_waits(app: Any) -> str:
    """A multi-line report of the consumer's flow, partitions, fetch state and waiting tasks."""
    lines: list[str] = []
    consumer = app.consumer
    lines.append(f"flow active {consumer.flow_active}, suspended {consumer.suspend_flow.is_set()}, "
                 f"flow control active {app.flow_control.is_active()}, rebalancing {app.rebalancing}, "
                 f"in recovery {app.in_recovery}, generation {app.consumer_generation_id}")
    active = consumer._active_partitions or set()
    lines.append(f"Faust: active {_names(active)}; paused {_names(consumer._paused_partitions)}; "
                 f"buffered {_names(consumer._buffered_partitions)}")
    lines.extend(_fetch_state(consumer))
    for task, frames in _waiting(app.loop) + _waiting(_consumer_thread_loop(consumer)):
        lines.append(f"task {task.get_coro().__qualname__}:")  # type: ignore[union-attr]
        for frame in frames[-12:]:
            code = frame.f_code
            lines.append(f"    {code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {code.co_name}")
    return "\n".join(lines)


def _fetch_state(consumer: Any) -> list[str]:
    """aiokafka's view of each assigned partition."""
    thread = getattr(consumer, "_thread", None)
    client = getattr(thread, "_consumer", None)
    fetcher = getattr(client, "_fetcher", None)
    assignment = getattr(getattr(getattr(client, "_subscription", None), "subscription", None),
                         "assignment", None)
    if fetcher is None or assignment is None:
        return ["aiokafka: no fetcher or assignment"]
    lines = [f"aiokafka: fetches in flight to nodes {sorted(fetcher._in_flight)}, "
             f"{len(fetcher._pending_tasks)} pending tasks"]
    for tp in sorted(assignment.tps):
        state = assignment.state_value(tp)
        buffered = fetcher._records.get(tp)
        lines.append(f"  {tp.topic}[{tp.partition}] position {state._position} status {state._status} "
                     f"paused {state.paused} buffered {type(buffered).__name__ if buffered else '-'}")
    return lines


def _waiting(loop: asyncio.AbstractEventLoop | None) -> list[tuple[asyncio.Task[Any], list[Any]]]:
    """The tasks of `loop` with a watched coroutine in their chain of awaits, and that chain."""
    if loop is None:
        return []
    found = []
    for task in list(asyncio.all_tasks(loop)):
        frames = awaiting(task.get_coro())
        if any(frame.f_code.co_name in WATCHED_COROUTINES for frame in frames):
            found.append((task, frames))
    return found


def awaiting(coro: Any) -> list[Any]:
    """The frames of a suspended coroutine and of what it awaits, down to where it waits
    (`Task.get_stack` gives only the outermost)."""
    frames = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None) \
            or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None) \
            or getattr(coro, "gi_yieldfrom", None)
    return frames


def _consumer_thread_loop(consumer: Any) -> asyncio.AbstractEventLoop | None:
    thread = getattr(consumer, "_thread", None)
    return getattr(thread, "thread_loop", None)


def _names(tps: Any) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "none"
