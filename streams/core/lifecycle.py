"""The order lifecycle as data: a transitions table, checked once at start-up.

A row says: an order in `source` status that takes an event of `event` type moves to `target` and
asks for `effects` (names of HTTP effects, e.g. "shipments"). `source=None` is the row that creates
an order. A user's own lifecycle is a JSON file (ORDERFLOW_LIFECYCLE) in the same shape:

    {"final": ["delivered"], "transitions": [
        {"from": null, "event": "created", "to": "created"},
        {"from": "created", "event": "paid", "to": "paid", "effects": ["shipments"]}, ...],
     "timeouts": [{"status": "created", "after_s": 1800, "event": "cancelled"},
                  {"status": "paid", "after_s": 172800, "stuck": true}]}

A timeout gives an order that stayed `after_s` seconds in `status` a synthetic event of type
`event` (which that status must accept), or with `"stuck": true` marks it stuck until it moves.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from streams.errors import LifecycleError


@dataclass(frozen=True)
class Transition:
    source: str | None
    event: str
    target: str
    effects: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatusTimeout:
    status: str
    after_s: float
    event: str | None = None  # the synthetic event's type; None with stuck
    stuck: bool = False


@dataclass(frozen=True)
class Lifecycle:
    """A checked transitions table with fast look-ups."""

    transitions: tuple[Transition, ...]
    final: frozenset[str]
    _index: dict[tuple[str | None, str], Transition] = field(repr=False, compare=False)
    timeouts: dict[str, StatusTimeout] = field(default_factory=dict, compare=False)
    # made once (`event_types` is read for every event, in validation): a `cached_property` never
    # caches on a class compiled by mypyc (no instance `__dict__`), and built them every time
    event_types: frozenset[str] = field(init=False, repr=False, compare=False)
    statuses: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_types", frozenset(r.event for r in self.transitions))
        object.__setattr__(self, "statuses", frozenset(r.target for r in self.transitions))

    @classmethod
    def build(cls, rows: Iterable[Transition], final: Iterable[str],
              timeouts: Iterable[StatusTimeout] = ()) -> Lifecycle:
        """Check the table and index it; raise LifecycleError on the first inconsistency."""
        rows = tuple(rows)
        final_set = frozenset(final)
        index: dict[tuple[str | None, str], Transition] = {}
        for row in rows:
            key = (row.source, row.event)
            if key in index and index[key] != row:
                raise LifecycleError(
                    f"conflicting rows for status {row.source!r} and event {row.event!r}: "
                    f"to {index[key].target!r} and to {row.target!r}"
                )
            index[key] = row
        statuses = {r.target for r in rows} | {r.source for r in rows if r.source is not None}
        if not any(r.source is None for r in rows):
            raise LifecycleError("no row creates an order (a row with from = null)")
        unknown = sorted(final_set - statuses)
        if unknown:
            raise LifecycleError(f"final statuses never reached by any row: {', '.join(unknown)}")
        for row in rows:
            if row.source in final_set:
                raise LifecycleError(f"final status {row.source!r} has an outgoing row ({row.event})")
        reachable = _reachable(rows)
        stranded = sorted(statuses - reachable)
        if stranded:
            raise LifecycleError(f"statuses no event sequence can reach: {', '.join(stranded)}")
        return cls(rows, final_set, index, _check_timeouts(timeouts, index, statuses, final_set))

    @classmethod
    def from_json(cls, path: Path) -> Lifecycle:
        """Load a user's lifecycle file (shape in the module docstring)."""
        try:
            data = json.loads(path.read_text())
            rows = [
                Transition(r["from"], r["event"], r["to"], tuple(r.get("effects", ())))
                for r in data["transitions"]
            ]
            final = data.get("final", [])
            timeouts = [_timeout(t) for t in data.get("timeouts", [])]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LifecycleError(f"cannot read lifecycle {path}: {exc}") from None
        return cls.build(rows, final, timeouts)

    def step(self, status: str | None, event: str) -> Transition | None:
        """The row for `event` in `status` (None: the order does not exist yet), or None."""
        return self._index.get((status, event))

    def can_ever_take(self, status: str | None, event: str) -> bool:
        """True when some later status reachable from `status` accepts `event` (park, don't reject)."""
        return any(self.step(s, event) is not None for s in _reachable(self.transitions, status))


def _timeout(entry: dict[str, object]) -> StatusTimeout:
    """One entry of a lifecycle file's `timeouts` (shape in the module docstring)."""
    after = entry["after_s"]
    if isinstance(after, bool) or not isinstance(after, int | float):
        raise TypeError(f"timeout of {entry.get('status')!r}: after_s must be a number of seconds")
    event = entry.get("event")
    if event is not None and not isinstance(event, str):
        raise TypeError(f"timeout of {entry.get('status')!r}: event must be an event type")
    return StatusTimeout(str(entry["status"]), float(after), event, entry.get("stuck") is True)


def _check_timeouts(timeouts: Iterable[StatusTimeout], index: dict[tuple[str | None, str], Transition],
                    statuses: set[str], final: frozenset[str]) -> dict[str, StatusTimeout]:
    checked: dict[str, StatusTimeout] = {}
    for t in timeouts:
        where = f"timeout of status {t.status!r}"
        if t.status not in statuses:
            raise LifecycleError(f"{where}: no row reaches that status")
        if t.status in final:
            raise LifecycleError(f"{where}: a final status never times out")
        if t.status in checked:
            raise LifecycleError(f"{where}: given twice")
        if not t.after_s > 0 or t.after_s == float("inf"):
            raise LifecycleError(f"{where}: after_s must be a positive number of seconds")
        if (t.event is None) == (not t.stuck):
            raise LifecycleError(f"{where}: give either an event or \"stuck\": true")
        if t.event is not None and (t.status, t.event) not in index:
            raise LifecycleError(f"{where}: status {t.status!r} does not take {t.event!r}")
        checked[t.status] = t
    return checked


def _reachable(rows: tuple[Transition, ...], start: str | None = None) -> set[str]:
    """Statuses reachable from `start` (None: from a new order) following the rows, `start` excluded
    unless a cycle leads back to it."""
    frontier: list[str | None] = [start]
    seen: set[str] = set()
    while frontier:
        current = frontier.pop()
        for row in rows:
            if row.source == current and row.target not in seen:
                seen.add(row.target)
                frontier.append(row.target)
    return seen


DEFAULT = Lifecycle.build(
    [
        Transition(None, "created", "created"),
        Transition("created", "accepted", "accepted"),
        Transition("created", "paid", "paid", ("shipments",)),
        Transition("accepted", "paid", "paid", ("shipments",)),
        Transition("paid", "shipped", "shipped"),
        Transition("shipped", "delivered", "delivered"),
        Transition("created", "cancelled", "cancelled"),
        Transition("accepted", "cancelled", "cancelled"),
        Transition("paid", "cancelled", "cancelled", ("refunds",)),
    ],
    final=["delivered", "cancelled"],
)


def load(path: str | None) -> Lifecycle:
    """The lifecycle to run: the user's file when given, else the contract's default."""
    return Lifecycle.from_json(Path(path)) if path else DEFAULT
