"""The order state machine: pure functions over an order record (a dict), no I/O, no Faust.

An order record is one JSON object, written as ONE changelog record, so an order's state and the
event ids it has seen change together: a crash can never apply an event twice or lose its mark.

    {"order_id", "client_id", "status", "version", "history": [...], "parked": [...],
     "retry": {...} | None, "seen": {event_id: first_seen_epoch}, "failure": {...} | None,
     "letters": {dead_letter_id: sent_epoch}, "created_at", "updated_at"}

`letters` holds the ids of the dead letters the order sent (kept as long as event ids), so a crash
that redoes an event finds its failure's letter already sent and does not send a second one.

`status` is None while an order only has parked events (it was never created).

Timed fields: `status_since` (epoch the order entered its status), `timed_out` ("status:version"
whose timeout already fired: a timeout fires once, whatever its event's outcome), `stuck`
({"status", "since"} while a `stuck` timeout holds the order), `due_at` (when the order next needs
a timed look: its entry in the time-ordered index, streams/index.py).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

from schemas.envelope import Envelope
from streams.core.lifecycle import Lifecycle, StatusTimeout, Transition

Event = Envelope  # an envelope (schemas/envelope.py): its fields, and any extra ones kept

#: One line of an order's history ("from" is a keyword, hence this form).
HistoryEntry = TypedDict("HistoryEntry", {
    "event_id": str, "type": str, "from": str | None, "to": str | None, "at": str, "outcome": str,
    "reason": NotRequired[str],
})


class Parked(TypedDict):
    """An early event waiting on its order, with where it came in ([topic, partition, offset])."""

    event: Event
    parked_at: float
    source: list[Any] | None


class Retry(TypedDict):
    """The event waiting for a retry of its effect (later events park behind it)."""

    event: Event
    attempts: int
    due_at: float
    due: str
    reason: str
    source: list[Any] | None


class Failure(TypedDict):
    event_id: str
    reason: str
    at: str


class Stuck(TypedDict):
    status: str | None
    since: str


class Order(TypedDict):
    """One order's record (the module docstring); the timed fields only once they apply."""

    order_id: str
    client_id: str
    status: str | None
    version: int
    history: list[HistoryEntry]
    parked: list[Parked]
    retry: Retry | None
    seen: dict[str, float]
    failure: Failure | None
    letters: dict[str, float]
    created_at: str
    updated_at: str
    status_since: NotRequired[float]
    timed_out: NotRequired[str]
    stuck: NotRequired[Stuck]
    due_at: NotRequired[float | None]
    finished_at: NotRequired[float]


class Verdict(enum.Enum):
    DUPLICATE = "duplicate"  # its event id was seen within the retention: drop it
    APPLY = "apply"  # the order takes it now
    PARK = "park"  # the order may take it later (or an earlier event waits for a retry)
    REJECT = "reject"  # the order can never take it
    PARK_FULL = "park_full"  # it would be parked, but the order's park is full


@dataclass(frozen=True)
class Limits:
    history: int = 50
    parked: int = 20


_stamped: tuple[int, str] = (-1, "")  # the last millisecond formatted, and its text
_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text (no fraction)


def rfc3339(epoch: float) -> str:
    """The time to the millisecond, as the contract writes it. Events processed within one
    millisecond (a dozen at full speed) share the text, and the milliseconds of one second share
    its date and time: formatting a datetime for each took 2.5% of a worker's CPU, and still 6%
    with effects, where events are spread over more milliseconds. (Each pair is replaced in one
    assignment: safe from any thread.)"""
    global _stamped, _second
    fraction, whole = math.modf(epoch)  # as datetime rounds to the microsecond, then truncates
    ms = int(whole) * 1000 + round(fraction * 1_000_000) // 1000
    last_ms, text = _stamped
    if ms != last_ms:
        second, milli = divmod(ms, 1000)
        last_second, prefix = _second
        if second != last_second:
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            _second = (second, prefix)
        text = f"{prefix}.{milli:03d}Z"
        _stamped = (ms, text)
    return text


def parse_time(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 time, or None if it cannot be read."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


def new_order(event: Event, now: float) -> Order:
    """An empty record for an order never seen before."""
    stamp = rfc3339(now)
    return {
        "order_id": event["order_id"], "client_id": event["client_id"], "status": None,
        "version": 0, "history": [], "parked": [], "retry": None, "seen": {}, "failure": None,
        "letters": {}, "created_at": stamp, "updated_at": stamp,
    }


def classify(
    order: Order, event: Event, lifecycle: Lifecycle, limits: Limits
) -> tuple[Verdict, Transition | None]:
    """What to do with `event` for `order` (use `new_order` for an unknown one)."""
    if event["event_id"] in order["seen"]:
        return Verdict.DUPLICATE, None
    if order["retry"] is None:
        row = lifecycle.step(order["status"], event["type"])
        if row is not None:
            return Verdict.APPLY, row
        if not lifecycle.can_ever_take(order["status"], event["type"]):
            return Verdict.REJECT, None
    if len(order["parked"]) >= limits.parked:
        return Verdict.PARK_FULL, None
    return Verdict.PARK, None


def _record(order: Order, event: Event, to: str | None, outcome: str, now: float,
            limits: Limits, reason: str | None = None) -> None:
    entry: HistoryEntry = {"event_id": event["event_id"], "type": event["type"],
                           "from": order["status"], "to": to, "at": rfc3339(now), "outcome": outcome}
    if reason is not None:
        entry["reason"] = reason
    order["history"] = [*order["history"], entry][-limits.history:]
    order["updated_at"] = entry["at"]


def seen(order: Order, event: Event, now: float) -> Order:
    """Mark the event id as taken (reserved, or kept after success)."""
    return {**order, "seen": {**order["seen"], event["event_id"]: now}}


def forget(order: Order, event: Event) -> Order:
    """Release an event id (after a terminal failure), so a corrected resubmission is processed."""
    ids = dict(order["seen"])
    ids.pop(event["event_id"], None)
    return {**order, "seen": ids}


def apply(order: Order, event: Event, row: Transition, now: float, limits: Limits) -> Order:
    """The order after taking `event` through `row`: new status, version + 1, history, id kept."""
    result = seen(order, event, now)
    _record(result, event, row.target, "applied", now, limits)
    result["status"] = row.target
    result["version"] = order["version"] + 1
    if row.target != order["status"]:
        result["status_since"] = now
        result.pop("stuck", None)
    result["retry"] = None
    result["failure"] = None
    return result


def park(order: Order, event: Event, now: float, source: list[Any] | None = None) -> Order:
    """Keep an early event on the order, in arrival order; its id is reserved meanwhile. `source`
    is where it came in (topic, partition, offset), for its dead letter's id should it fail."""
    result = seen(order, event, now)
    result["parked"] = [*order["parked"], {"event": event, "parked_at": now, "source": source}]
    result["updated_at"] = rfc3339(now)
    return result


def reject(order: Order, event: Event, now: float, reason: str, limits: Limits) -> Order:
    """Record an event the order can never take; the order's state is unchanged, the id released."""
    result = forget(order, event)
    _record(result, event, order["status"], "rejected", now, limits, reason=reason)
    return result


def fail(order: Order, event: Event, now: float, reason: str, limits: Limits) -> Order:
    """Record a terminal failure of `event` (effect refused, retries exhausted, park timed out)."""
    result = forget(order, event)
    _record(result, event, order["status"], "failed", now, limits, reason=reason)
    result["retry"] = None
    result["failure"] = {"event_id": event["event_id"], "reason": reason, "at": rfc3339(now)}
    return result


def expire(order: Order, event: Event, now: float, limits: Limits) -> Order:
    """Record a parked event whose park timeout ran out; its id is released."""
    result = forget(order, event)
    _record(result, event, order["status"], "expired", now, limits, reason="park timeout")
    return result


def schedule_retry(order: Order, event: Event, attempts: int, due_at: float, reason: str,
                   now: float, source: list[Any] | None = None) -> Order:
    """Hold `event` for a retry at `due_at`; later events of this order park behind it."""
    result = seen(order, event, now)
    result["retry"] = {"event": event, "attempts": attempts, "due_at": due_at,
                       "due": rfc3339(due_at), "reason": reason, "source": source}
    result["updated_at"] = rfc3339(now)
    return result


def take_parked(order: Order, lifecycle: Lifecycle) -> tuple[Order, Parked, Verdict] | None:
    """The first parked entry (arrival order: {"event", "parked_at", "source"}) whose event the
    order can now take or can never take, removed from the park; None when every parked event must
    go on waiting (or a retry is pending)."""
    if order["retry"] is not None:
        return None
    for index, entry in enumerate(order["parked"]):
        event = entry["event"]
        if lifecycle.step(order["status"], event["type"]) is not None:
            verdict = Verdict.APPLY
        elif not lifecycle.can_ever_take(order["status"], event["type"]):
            verdict = Verdict.REJECT
        else:
            continue
        rest = order["parked"][:index] + order["parked"][index + 1:]
        return {**order, "parked": rest}, entry, verdict
    return None


def expire_parked(order: Order, now: float,
                  timeout_s: float) -> tuple[Order, list[Parked]]:
    """Remove parked entries older than the timeout; return them for the dead letters."""
    keep: list[Parked] = []
    expired: list[Parked] = []
    for entry in order["parked"]:
        (expired if now - entry["parked_at"] >= timeout_s else keep).append(entry)
    if not expired:
        return order, []
    return {**order, "parked": keep}, expired


def letter_sent(order: Order, letter_id: str) -> bool:
    """True when the order already sent the dead letter with this id (a redo after a crash)."""
    return letter_id in order.get("letters", ())


def record_letter(order: Order, letter_id: str, now: float) -> Order:
    """Remember that the order sent this dead letter, in the same record as the failure."""
    return {**order, "letters": {**order.get("letters", {}), letter_id: now}}


def expire_ids(order: Order, now: float, retention_s: float) -> Order:
    """Drop event ids (and sent letters' ids) older than the retention, except the ids of events
    still held by the order."""
    seen, letters = order["seen"], order.get("letters", {})
    if (not seen or now - min(seen.values()) < retention_s) \
            and (not letters or now - min(letters.values()) < retention_s):
        return order  # nothing expired (every event, so keep it to one scan in C)
    held = {e["event"]["event_id"] for e in order["parked"]}
    if order["retry"] is not None:
        held.add(order["retry"]["event"]["event_id"])
    ids = {k: t for k, t in seen.items() if now - t < retention_s or k in held}
    kept = {k: t for k, t in letters.items() if now - t < retention_s}
    if len(ids) == len(order["seen"]) and len(kept) == len(letters):
        return order
    return {**order, "seen": ids, "letters": kept}


@dataclass(frozen=True)
class Timing:
    """How long things may wait; 0 (retentions) means forever."""

    park_timeout_s: float
    finished_retention_s: float = 0.0
    id_retention_s: float = 0.0


def timeout_key(order: Order) -> str:
    return f"{order['status']}:{order['version']}"


def timeout_due(order: Order, lifecycle: Lifecycle) -> tuple[float, StatusTimeout] | None:
    """When the order's status times out (None: no timeout, or it fired for this status already)."""
    timeout = lifecycle.timeouts.get(order["status"]) if order["status"] is not None else None
    if timeout is None or order.get("timed_out") == timeout_key(order):
        return None
    since = order.get("status_since")
    if not isinstance(since, int | float):
        since = parse_time(order["updated_at"]) or 0.0
    return since + timeout.after_s, timeout


def timeout_event(order: Order, timeout: StatusTimeout, now: float) -> Event:
    """The synthetic event of a status timeout: its id derives from order, status and version, so
    it can never fire twice (and an effect it calls has the same Idempotency-Key on any worker)."""
    assert timeout.event is not None, "a stuck mark fires no event"
    return {"event_id": f"timeout:{order['order_id']}:{order['status']}:{order['version']}",
            "order_id": order["order_id"], "client_id": order["client_id"], "type": timeout.event,
            "occurred_at": rfc3339(now), "schema_version": 1,
            "payload": {"timeout": {"status": order["status"], "after_s": timeout.after_s}}}


def mark_stuck(order: Order, now: float) -> Order:
    return {**order, "stuck": {"status": order["status"], "since": rfc3339(now)},
            "timed_out": timeout_key(order)}


def next_due(order: Order, timing: Timing, lifecycle: Lifecycle | None = None) -> float | None:
    """When this order next needs a timed look: a retry due, a parked event timing out, a status
    timeout, event ids (or sent letters' ids) to forget, a finished order to remove. Ids held by a
    parked or pending event are not counted: they go when their event does."""
    times = [e["parked_at"] + timing.park_timeout_s for e in order["parked"]]
    if order["retry"] is not None:
        times.append(order["retry"]["due_at"])
    if lifecycle is not None and (timeout := timeout_due(order, lifecycle)) is not None:
        times.append(timeout[0])
    if timing.id_retention_s > 0:
        if order["parked"] or order["retry"] is not None:
            held = {e["event"]["event_id"] for e in order["parked"]}
            if order["retry"] is not None:
                held.add(order["retry"]["event"]["event_id"])
            seen_at = [t for k, t in order["seen"].items() if k not in held]
        else:  # nothing held (almost every order): the times as they are, scanned in C
            seen_at = list(order["seen"].values())
        seen_at.extend((order.get("letters") or {}).values())
        if seen_at:
            times.append(min(seen_at) + timing.id_retention_s)
    finished_at = order.get("finished_at")
    if timing.finished_retention_s > 0 and isinstance(finished_at, int | float):
        times.append(finished_at + timing.finished_retention_s)
    return min(times) if times else None


class RetryView(TypedDict):
    event_id: str
    type: str
    attempts: int
    due: str
    reason: str


class PendingView(TypedDict):
    retry: RetryView | None
    parked: int


class OrderView(TypedDict):
    """The public form of an order (GET /orders/{id}, the change feed's `order`)."""

    order_id: str
    client_id: str
    status: str | None
    version: int
    history: list[HistoryEntry]
    pending: PendingView
    failure: Failure | None
    stuck: Stuck | None
    created_at: str
    updated_at: str


class ClosedMarker(TypedDict):
    """What stays of a removed finished order (streams/closed.py): enough to refuse its late
    events once (`letters`: the ids of the `order_closed` letters sent) until `due_at`."""

    order_id: str
    client_id: str
    status: str | None
    version: int
    closed_at: float
    letters: dict[str, float]
    due_at: NotRequired[float | None]


#: One record of the change feed, per applied transition ("from" is a keyword, hence this form).
ChangeRecord = TypedDict("ChangeRecord", {
    "order_id": str, "client_id": str, "event_id": str, "type": str, "from": str | None,
    "to": str | None, "version": int, "at": str, "order": OrderView,
})


def change(before: Order, after: Order, event: Event) -> ChangeRecord:
    """The change-feed record of one applied transition (`after` is the order right after it)."""
    return {"order_id": after["order_id"], "client_id": after["client_id"],
            "event_id": event["event_id"], "type": event["type"], "from": before["status"],
            "to": after["status"], "version": after["version"], "at": after["updated_at"],
            "order": view(after)}


def view(order: Order) -> OrderView:
    """The public form of an order (GET /orders/{id}): the contract's fields, no internals."""
    retry = order["retry"]
    return {
        "order_id": order["order_id"], "client_id": order["client_id"], "status": order["status"],
        "version": order["version"], "history": order["history"],
        "pending": {
            "retry": None if retry is None else {
                "event_id": retry["event"]["event_id"], "type": retry["event"]["type"],
                "attempts": retry["attempts"], "due": retry["due"], "reason": retry["reason"]},
            "parked": len(order["parked"]),
        },
        "failure": order["failure"], "stuck": order.get("stuck"), "created_at": order["created_at"],
        "updated_at": order["updated_at"],
    }
