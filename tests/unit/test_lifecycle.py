"""The transitions table: the contract's default and the checks on a user's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.core.lifecycle import DEFAULT, Lifecycle, Transition
from streams.errors import LifecycleError


@pytest.mark.parametrize(
    ("status", "event", "target", "effects"),
    [
        (None, "created", "created", ()),
        ("created", "accepted", "accepted", ()),
        ("created", "paid", "paid", ("shipments",)),
        ("accepted", "paid", "paid", ("shipments",)),
        ("paid", "shipped", "shipped", ()),
        ("shipped", "delivered", "delivered", ()),
        ("created", "cancelled", "cancelled", ()),
        ("accepted", "cancelled", "cancelled", ()),
        ("paid", "cancelled", "cancelled", ("refunds",)),
    ],
)
def test_default_lifecycle_matches_the_contract(
    status: str | None, event: str, target: str, effects: tuple[str, ...]
) -> None:
    row = DEFAULT.step(status, event)
    assert row is not None and (row.target, row.effects) == (target, effects)


def test_early_versus_impossible_events() -> None:
    assert DEFAULT.step("created", "shipped") is None
    assert DEFAULT.can_ever_take("created", "shipped")  # early: park it
    assert not DEFAULT.can_ever_take("delivered", "paid")  # impossible: reject it
    assert not DEFAULT.can_ever_take("shipped", "cancelled")


def test_conflicting_rows_are_refused() -> None:
    with pytest.raises(LifecycleError, match="conflicting rows"):
        Lifecycle.build([Transition(None, "a", "x"), Transition(None, "a", "y")], final=[])


def test_unknown_final_status_is_refused() -> None:
    with pytest.raises(LifecycleError, match="never reached"):
        Lifecycle.build([Transition(None, "a", "x")], final=["nowhere"])


def test_unreachable_status_is_refused() -> None:
    rows = [Transition(None, "a", "x"), Transition("island", "b", "y")]
    with pytest.raises(LifecycleError, match="no event sequence can reach: island, y"):
        Lifecycle.build(rows, final=[])


def test_a_final_status_with_an_outgoing_row_is_refused() -> None:
    rows = [Transition(None, "a", "x"), Transition("x", "b", "y")]
    with pytest.raises(LifecycleError, match="final status 'x'"):
        Lifecycle.build(rows, final=["x"])


def test_a_users_lifecycle_loads_from_json(tmp_path: Path) -> None:
    path = tmp_path / "lifecycle.json"
    path.write_text(json.dumps({
        "final": ["done"],
        "transitions": [
            {"from": None, "event": "opened", "to": "open"},
            {"from": "open", "event": "closed", "to": "done", "effects": ["notify"]},
        ],
    }))
    lifecycle = Lifecycle.from_json(path)
    assert lifecycle.event_types == {"opened", "closed"}
    assert lifecycle.step("open", "closed") == Transition("open", "closed", "done", ("notify",))


def test_a_broken_lifecycle_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "lifecycle.json"
    path.write_text('{"transitions": [{"from": null}]}')
    with pytest.raises(LifecycleError, match="cannot read lifecycle"):
        Lifecycle.from_json(path)
