"""The engine room: everything that reaches into faust-streaming's, aiokafka's or mode's private
names lives in this package and nowhere else (tests/unit/test_engine_room.py checks it).

The rest of orderflow talks to it through these modules' public functions and classes:
`transport` (the drain loop, commits that never pass an event in flight), `fetches` (fetches
that gather records while events flow), `delivery` (the inputs a fetched batch at a time, with the
rebalance guards of Faust's stream), `gaps` (more rebalance guards), `context` (Faust's current
event, and table writes in an event's partition), `changelog` (those writes' changelog records
through librdkafka), `tables` (buffered table access, ordered reads), `rocksdb` (the shared-memory
store), `recovery` (bulk table recovery), `flow`, `supervision` and `stalls` (loop lag, stall
reports, `LoopTurn`), `logs` (the root logger's level, which Faust's spinner leaves at DEBUG). It
is written against one faust-streaming version, `FAUST_VERSION`;
`require_faust_version` refuses any other before a worker starts.
"""

from __future__ import annotations

from importlib import metadata

FAUST_VERSION = "0.15.3"


def require_faust_version(installed: str | None = None) -> None:
    """Stop with one line unless faust-streaming is the version the engine follows: its private
    names change between releases, and a mismatch would fail later, in the middle of a rebalance."""
    found = installed if installed is not None else metadata.version("faust-streaming")
    if found != FAUST_VERSION:
        raise SystemExit(f"orderflow's engine follows faust-streaming {FAUST_VERSION}, but {found} is "
                         f"installed: pip install 'faust-streaming=={FAUST_VERSION}'")
