"""The dead-letter outbox: letters leave with the flush that acks their events, stale ones never,
and a refused message redone after a crash is not dead-lettered again."""

from __future__ import annotations

from typing import Any

from streams.engine.tables import drive
from streams.outbox import Outbox


class Message:
    def __init__(self, partition: int) -> None:
        self.partition = partition


class Event:
    def __init__(self, partition: int = 0, current: bool = True) -> None:
        self.message = Message(partition)
        self.current = current


def outbox(marks: dict[str, Any]) -> tuple[Outbox, list[tuple[dict[str, Any], bytes | None]]]:
    sent: list[tuple[dict[str, Any], bytes | None]] = []
    return Outbox(lambda letter, key: sent.append((letter, key)), marks,
                        is_current=lambda event: event.current), sent


def test_letters_wait_for_the_flush_and_stale_ones_are_dropped() -> None:
    box, sent = outbox({})
    box.add(Event(), {"id": "a"}, b"c1")
    box.add(Event(current=False), {"id": "stale"}, b"c1")
    assert sent == []
    assert box.send()
    assert sent == [({"id": "a"}, b"c1")]


def test_a_refused_message_redone_after_a_crash_sends_no_second_letter() -> None:
    marks: dict[str, Any] = {}
    box, sent = outbox(marks)
    assert not box.refused_before(3, 41)
    box.refuse(Event(3), 3, 41, {"id": "x"}, None)
    box.send()
    assert marks == {"refused:3": 41} and len(sent) == 1
    after_crash, sent_again = outbox(marks)  # a new worker, its marks restored from the changelog
    assert after_crash.refused_before(3, 41) and after_crash.refused_before(3, 7)
    assert not after_crash.refused_before(3, 42) and not after_crash.refused_before(2, 41)
    assert sent_again == []


def test_a_lost_partition_s_letters_and_marks_are_the_new_owner_s() -> None:
    marks: dict[str, Any] = {}
    box, sent = outbox(marks)
    box.refuse(Event(1), 1, 5, {"id": "x"}, None)
    box.forget([1])
    box.send()
    assert sent == [] and marks == {}


def test_a_refusal_made_while_a_flush_writes_waits_for_the_next_flush_mark_and_letter_alike() -> None:
    """A flush takes its letters and marks in one step and writes them a slice at a time: a mark
    written ahead of its letter would make a redo after a crash skip a letter never sent."""
    marks: dict[str, Any] = {}
    box, sent = outbox(marks)
    box.refuse(Event(0), 0, 5, {"id": "five"}, None)
    flush = box.send_steps()
    box.refuse(Event(0), 0, 9, {"id": "nine"}, None)  # while the flush is under way
    assert drive(flush)
    assert marks == {"refused:0": 5} and [letter["id"] for letter, _ in sent] == ["five"]
    assert drive(box.send_steps())
    assert marks == {"refused:0": 9} and [letter["id"] for letter, _ in sent] == ["five", "nine"]
