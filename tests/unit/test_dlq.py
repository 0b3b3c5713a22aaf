"""Choosing and showing dead letters (the Kafka side is tested in tests/kafka/test_effects.py)."""

from __future__ import annotations

import pytest

from streams.errors import OrderflowError
from streams.tools.dlq import Letter, choose, table
from tests.helpers import make_event


def letter(offset: int, event: object, kind: str = "effect_failed") -> Letter:
    return Letter(0, offset, {"event": event, "reason": {"kind": kind, "message": "HTTP 400 " + "x" * 200},
                              "attempts": 1, "failed_at": f"2026-11-22T10:00:{offset:02d}.000Z"})


def test_replay_all_sends_the_newest_letter_per_event_once_and_skips_unreplayable() -> None:
    paid = make_event("o1", "paid")
    letters = [letter(1, paid), letter(2, "{not json", "invalid_event"), letter(3, paid, "rejected"),
               letter(4, make_event("o2", "shipped"), "park_timeout")]
    chosen = choose(letters, None, None)
    assert [e["event_id"] for e in chosen.events] == [paid["event_id"], letters[3].event_id]
    assert len(chosen.skipped) == 1 and "0:2 (invalid_event)" in chosen.skipped[0]
    only = choose(letters, None, "park_timeout")
    assert [e["order_id"] for e in only.events] == ["o2"] and not only.skipped


def test_replay_by_id_refuses_ids_that_are_not_dead_letters() -> None:
    paid = make_event("o1", "paid")
    assert choose([letter(1, paid)], [paid["event_id"]], None).events == [paid]
    with pytest.raises(OrderflowError, match="missing-id"):
        choose([letter(1, paid)], [paid["event_id"], "missing-id"], None)


def test_the_table_has_one_aligned_row_per_letter_with_long_messages_cut() -> None:
    lines = table([letter(1, make_event("o1", "paid")), letter(2, "raw text", "invalid_event")]).splitlines()
    assert len(lines) == 3 and lines[0].startswith("FAILED AT")
    assert "effect_failed" in lines[1] and "o1" in lines[1] and lines[1].endswith("…")
    assert lines[0].index("KIND") == lines[1].index("effect_failed") == lines[2].index("invalid_event")
