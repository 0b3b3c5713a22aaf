"""Faust's current-event context, in one place.

Faust writes a table change to the changelog partition of the *current event* (a context variable
its stream iterator sets, `faust.streams._current_event`). Our lanes and the ack loop's flush run
outside that iterator, so they set it themselves: per job, and per record when a flush writes
changes of many partitions. With a `ChangelogWriter` installed (streams/engine/changelog.py), the
writes of its tables go through it instead, in the event's partition, and the caller flushes it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faust.exceptions import PartitionsMismatch
from faust.streams import _current_event
from faust.streams import current_event as _faust_current_event

from streams.engine.changelog import ChangelogWriter

__all__ = ["current_event", "delete_in_context", "detached", "install_writer", "set_current",
           "write_changes", "write_in_context"]

_writer: ChangelogWriter | None = None


def install_writer(writer: ChangelogWriter | None) -> None:
    """Table writes from now on go through `writer` (None: Faust's own path again)."""
    global _writer
    _writer = writer


def current_event() -> Any:
    """The event whose processing this task is in (None outside any)."""
    return _faust_current_event()


def set_current(event: Any) -> None:
    """Make `event` (or None) the current event of this task's context."""
    _current_event.set(weakref.ref(event) if event is not None else None)


@contextmanager
def detached() -> Iterator[None]:
    """Run a block with no current event, then put back the one there was (a flush sets one per
    record it writes; the caller's own must survive)."""
    token = _current_event.set(None)
    try:
        yield
    finally:
        _current_event.reset(token)


def write_in_context(table: Any, key: str, event: Any, value: Any, encoded: bytes | None = None) -> bool:
    """`table[key] = value` in `event`'s changelog partition (`encoded`: the value's bytes as
    `changelog.table_json` made them, if the caller has them); False while Faust does not know the
    changelog topic's partitions yet (right after creating it)."""
    if _writer is not None and _writer.handles(table):
        _writer.put(table, key, event.message.partition, value, encoded)
        return True
    token = _current_event.set(weakref.ref(event))  # Faust's path reads the current event
    try:
        table[key] = value
    except PartitionsMismatch:
        return False
    finally:
        _current_event.reset(token)  # the caller's own current event is left as it was
    return True


def write_changes(table: Any, changes: list[tuple[str, Any, Any, bytes | None]]) -> list[bool]:
    """Each `(key, event, value or None to delete it, encoded value or None)` in its event's
    changelog partition, the local writes of the call batched per partition when the writer
    handles the table; per change, whether it was written (see `write_in_context`)."""
    if _writer is not None and _writer.handles(table):
        _writer.write(table, [(key, event.message.partition, value, encoded)
                              for key, event, value, encoded in changes])
        return [True] * len(changes)
    return [write_in_context(table, key, event, value, encoded) if value is not None
            else delete_in_context(table, key, event) for key, event, value, encoded in changes]


def delete_in_context(table: Any, key: str, event: Any) -> bool:
    """`del table[key]` (a changelog tombstone) in `event`'s changelog partition; as above."""
    if _writer is not None and _writer.handles(table):
        _writer.delete(table, key, event.message.partition)
        return True
    token = _current_event.set(weakref.ref(event))
    try:
        if key in table:
            del table[key]
    except PartitionsMismatch:
        return False
    finally:
        _current_event.reset(token)
    return True
