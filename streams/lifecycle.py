"""The order lifecycle as data: a transitions table, checked once at start-up.

A row says: an order in `source` status that takes an event of `event` type moves to `target` and
asks for `effects` (names of HTTP effects, e.g. "shipments"). `source=None` is the row that creates
an order. A user's own lifecycle is a JSON file (ORDERFLOW_LIFECYCLE) in the same shape:

    {"final": ["delivered"], "transitions": [
        {"from": null, "event": "created", "to": "created"},
        {"from": "created", "event": "paid", "to": "paid", "effects": ["shipments"]}, ...]}
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from streams.errors import LifecycleError


@dataclass(frozen=True)
class Transition:
    source: str | None
    event: str
    target: str
    effects: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lifecycle:
    """A checked transitions table with fast look-ups."""

    transitions: tuple[Transition, ...]
    final: frozenset[str]
    _index: dict[tuple[str | None, str], Transition] = field(repr=False, compare=False)

    @classmethod
    def build(cls, rows: Iterable[Transition], final: Iterable[str]) -> Lifecycle:
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
        return cls(rows, final_set, index)

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
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LifecycleError(f"cannot read lifecycle {path}: {exc}") from None
        return cls.build(rows, final)

    @cached_property  # read for every event (validation)
    def event_types(self) -> frozenset[str]:
        return frozenset(r.event for r in self.transitions)

    @cached_property
    def statuses(self) -> frozenset[str]:
        return frozenset(r.target for r in self.transitions)

    def step(self, status: str | None, event: str) -> Transition | None:
        """The row for `event` in `status` (None: the order does not exist yet), or None."""
        return self._index.get((status, event))

    def can_ever_take(self, status: str | None, event: str) -> bool:
        """True when some later status reachable from `status` accepts `event` (park, don't reject)."""
        return any(self.step(s, event) is not None for s in _reachable(self.transitions, status))


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
