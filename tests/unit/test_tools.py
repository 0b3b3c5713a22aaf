"""The simulator's promises, the lifecycle drawings, and the CLI's handling of bad arguments."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections import defaultdict

from streams.core.lifecycle import DEFAULT, Lifecycle, StatusTimeout
from streams.tools.simulate import read_expected, traffic, write_expected
from streams.web.drawing import dot, mermaid, svg
from tests.reference import run_model
from tests.workers import ROOT


def test_simulated_traffic_ends_where_an_independent_model_says() -> None:
    made = traffic(orders=300, clients=20, seed=9, prefix="t")
    by_order: dict[str, list[dict]] = defaultdict(list)
    for event in made.events:
        assert event["client_id"] == made.clients[event["order_id"]]
        by_order[event["order_id"]].append(event)
    for order_id, events in by_order.items():
        model = run_model(events, DEFAULT)
        assert (model.status, model.version) == made.expected[order_id]
    assert made.duplicates > 0 and made.swapped > 0 and made.impossible
    ids = [e["event_id"] for e in made.events]
    assert len(set(ids)) == len(ids) - made.duplicates


def test_the_expected_file_round_trips(tmp_path) -> None:
    made = traffic(orders=12, clients=3, seed=1)
    write_expected(made, tmp_path / "expected.jsonl")
    rows = read_expected(tmp_path / "expected.jsonl")
    assert {k: (r["status"], r["version"]) for k, r in rows.items()} == made.expected


def test_drawings_show_every_transition_and_effect() -> None:
    text = mermaid(DEFAULT)
    assert text.startswith("stateDiagram-v2")
    assert "[*] --> created: created" in text
    assert "paid --> cancelled: cancelled / POST /refunds" in text
    assert "delivered --> [*]" in text
    graph = dot(DEFAULT)
    assert graph.count("->") == len(DEFAULT.transitions)
    assert '"accepted" -> "paid" [label="paid / POST /shipments"];' in graph
    picture = svg(DEFAULT)
    assert picture.count("<polyline") == len(DEFAULT.transitions)
    assert all(f'data-status="{s}"' in picture for s in DEFAULT.statuses)


def test_drawings_show_status_timeouts() -> None:
    timed = Lifecycle.build(DEFAULT.transitions, DEFAULT.final, [
        StatusTimeout("created", 1800, event="cancelled"), StatusTimeout("paid", 172800, stuck=True)])
    assert "note right of created: after 30m: cancelled" in mermaid(timed)
    graph = dot(timed)
    assert '"created" -> "cancelled" [style=dashed, label="after 30m: cancelled"];' in graph
    assert '"paid" -> "paid" [style=dashed, label="after 2d: stuck"];' in graph
    assert "after 2d: stuck" in svg(timed)


def orderflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.tools.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)


def test_bad_arguments_get_one_line_and_a_non_zero_exit() -> None:
    for args in (["lifecycle", "--format", "png"], ["simulate", "--orders", "0"],
                 ["gateway", "--error-rate", "1.5"], ["dlq", "list", "--limit", "-3"],
                 ["demo", "--rate", "fast"]):
        result = orderflow(*args)
        assert result.returncode == 2, args
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, args


def test_lifecycle_command_prints_the_users_own_table(tmp_path) -> None:
    own = tmp_path / "mine.json"
    own.write_text('{"final": ["done"], "transitions": [{"from": null, "event": "opened", "to": "open"},'
                   '{"from": "open", "event": "closed", "to": "done"}]}')
    result = orderflow("lifecycle", "--format", "dot", "--file", str(own))
    assert result.returncode == 0 and '"open" -> "done" [label="closed"];' in result.stdout
    broken = tmp_path / "broken.json"
    broken.write_text('{"transitions": []}')
    result = orderflow("lifecycle", "--file", str(broken))
    assert result.returncode == 1 and "no row creates an order" in result.stderr


def test_lifecycle_check_runs_the_start_up_checks_without_a_worker(tmp_path) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"final": ["done"], "transitions": [{"from": null, "event": "opened", "to": "open"},'
                    '{"from": "open", "event": "closed", "to": "done"}],'
                    '"timeouts": [{"status": "open", "after_s": 60, "event": "closed"}]}')
    result = orderflow("lifecycle", "check", str(good))
    assert result.returncode == 0
    assert result.stdout.strip() == f"{good}: ok: 2 statuses, 2 transitions, 1 final, 1 timeouts"
    bad_timeout = tmp_path / "bad.json"
    bad_timeout.write_text(good.read_text().replace('"event": "closed"}]}', '"event": "reopened"}]}'))
    missing = tmp_path / "missing.json"
    for path, says in ((bad_timeout, "reopened"), (missing, "missing.json")):
        result = orderflow("lifecycle", "check", str(path))
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr and says in result.stderr, result.stderr
    assert orderflow("lifecycle", "check").returncode == 1


def test_publish_to_an_unreachable_broker_is_one_line_and_a_non_zero_exit_within_30s(tmp_path) -> None:
    from tests.conftest import free_port

    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e1", "order_id": "o1", "client_id": "c1", "type": "created", '
                      '"occurred_at": "2026-11-23T10:00:00Z", "schema_version": 1}\n')
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "streams.tools.cli", "publish", str(events)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={**os.environ, "KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    took = time.monotonic() - started
    said = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode != 0 and took < 30
    assert len(said) == 1 and "no Kafka broker answered" in said[0], said
    assert not any(line.startswith("%") for line in said)


def test_the_lifecycle_drawing_has_no_edge_through_a_box_and_no_boxes_on_each_other() -> None:
    from streams.web.drawing import START, _layout

    box_w, box_h = 110, 30
    centres, paths = _layout(DEFAULT, box_w, box_h, 80, 40)
    boxes = {name: (x - box_w / 2, y - box_h / 2, x + box_w / 2, y + box_h / 2)
             for name, (x, y) in centres.items()}

    def crosses(a: tuple[float, float], b: tuple[float, float], box: tuple[float, ...],
                steps: int = 200) -> bool:
        x0, y0, x1, y1 = box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1  # the border itself is fine
        return any(x0 < a[0] + (b[0] - a[0]) * t / steps < x1 and y0 < a[1] + (b[1] - a[1]) * t / steps < y1
                   for t in range(steps + 1))

    for row, points in paths:
        ends = {START if row.source is None else row.source, row.target}
        for name, box in boxes.items():
            if name not in ends:
                assert not any(crosses(a, b, box) for a, b in itertools.pairwise(points)), \
                    (row, name)
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes[a], boxes[b]
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, (a, b)
