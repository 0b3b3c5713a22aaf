"""Dead letters held back until the flush that acks their events, so a redo sends none again.

A letter sent the moment its failure is decided reaches Kafka long before the order record that
remembers it (that record is written at the next flush), and the events are committed later still
(every few seconds): a worker killed in between redid the failure and sent a second letter. Here:

* letters of an order's failure are queued with the event that failed and produced, right before
  the order records, by the ack loop's flush: the letter and the record that remembers its id leave
  in the same step (see `streams.processor`: an order never sends a letter whose id it holds);
* a message that is no event of any order (refused at decode) has no record to remember its
  letter, so the partition's highest refused offset is kept in the `partition-stats` table, written
  in the same step: a redo of an offset at or below it sends nothing (decode is deterministic and a
  partition is decoded in offset order).

The letters go through the changelog records' own producer (`ChangelogWriter.produce`): the same
idempotent librdkafka producer and flush, so after a broker restart both wait for its producer id
and leave together (through Faust's producer, a letter was delivered at once while its record
waited, and a worker stopped in between sent it again: a chaos run, 2026-12-04). What remains is
one flush: two partitions, so a worker dying within it may still leave one delivered and not the
other. Such a second copy has the same `id` (`streams.core.deadletters`), and every reader counts
by id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from streams.engine.context import detached, write_in_context
from streams.engine.tables import SLICE, WriteSteps, drive

Letter = TypeVar("Letter")  # a dead letter (streams.core.deadletters), or a change record


class Outbox(Generic[Letter]):
    """`add` a letter with its event; `send` them all (the ack loop, right before the flush)."""

    def __init__(self, send: Callable[[Letter, bytes | None], None], marks: Any,
                 is_current: Callable[[Any], bool] = lambda _event: True) -> None:
        self._send = send  # produce one letter with its key (a buffered, non-blocking send)
        self._marks = marks  # a table: "refused:<partition>" -> highest refused offset
        self._is_current = is_current
        self._pending: list[tuple[Any, Letter, bytes | None]] = []
        self._refused: dict[int, int] = {}  # partition -> highest refused offset known
        self._dirty_marks: dict[int, Any] = {}  # partition -> the event whose context writes it

    def add(self, event: Any, letter: Letter, key: bytes | None) -> None:
        if event is None:  # no Kafka event to wait for (not called from a stream): send it now
            self._send(letter, key)
            return
        if not self._is_current(event):  # from before a rebalance: the redo sends it
            return
        self._pending.append((event, letter, key))

    def refused_before(self, partition: int, offset: int) -> bool:
        """True when this message was refused (and its letter sent) before a crash redid it."""
        if partition not in self._refused:
            saved = self._marks.get(_mark_key(partition)) if self._marks is not None else None
            self._refused[partition] = int(saved) if isinstance(saved, int) else -1
        return offset <= self._refused[partition]

    def refuse(self, event: Any, partition: int, offset: int, letter: Letter, key: bytes | None) -> None:
        """Queue the letter of a refused message and remember its offset with it."""
        if not self._is_current(event):  # from before a rebalance: the redo refuses it again
            return
        self.add(event, letter, key)
        if offset > self._refused.get(partition, -1):
            self._refused[partition] = offset
            self._dirty_marks[partition] = event

    def send(self) -> bool:
        """Produce the letters of current events and write the refused marks; False when a mark
        could not be written yet (a changelog Faust does not know yet): retried at the next flush."""
        return drive(self.send_steps())

    def send_steps(self) -> WriteSteps:
        """`send`, a slice of letters at a time. The letters and the marks (with their offsets) are
        taken when called, so a flush takes them in the same step as the records that remember
        them, and a refusal made while it writes waits for the next flush, mark and letter alike."""
        pending, self._pending = self._pending, []
        marks = {partition: (event, self._refused[partition])
                 for partition, event in self._dirty_marks.items()}
        self._dirty_marks = {}
        return self._send_all(pending, marks)

    def _send_all(self, pending: list[tuple[Any, Letter, bytes | None]],
                  marks: dict[int, tuple[Any, int]]) -> WriteSteps:
        for n, (event, letter, key) in enumerate(pending, start=1):
            if self._is_current(event):  # else fetched before a rebalance: redone by the new owner
                self._send(letter, key)
            if n % SLICE == 0:
                yield
        unwritten = False
        with detached():
            for partition, (event, offset) in marks.items():
                if not self._is_current(event):
                    self._refused.pop(partition, None)  # reread: the change is redone
                elif not write_in_context(self._marks, _mark_key(partition), event, offset):
                    unwritten = True
                    self._dirty_marks.setdefault(partition, event)
        return not unwritten

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions this worker lost: their letters and marks are the new owner's to redo."""
        lost = set(partitions)
        self._pending = [item for item in self._pending if item[0].message.partition not in lost]
        for partition in lost:
            self._refused.pop(partition, None)
            self._dirty_marks.pop(partition, None)


def _mark_key(partition: int) -> str:
    return f"refused:{partition}"
