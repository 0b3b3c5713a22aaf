"""The chaos run of `bench/chaos.py`, small: workers SIGKILLed and restarted, the broker SIGKILLed
and restarted, a failing gateway, two partitioners; nothing lost, applied twice or sent twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import Options, run


@pytest.mark.timeout(900)  # a worker stuck by the broker kill stops itself after 45 s, then restarts
def test_chaos_loses_nothing_and_does_nothing_twice(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    report = run(Options(orders=300, clients=30, rate=100.0, kill_every_s=5.0, min_kills=3,
                         workdir=tmp_path / "chaos"))
    with capsys.disabled():
        print("\n" + report.table())
    assert report.worker_kills >= 3 and report.broker_kills == 1
    assert report.right == report.orders == 300, report.wrong[:10]
    assert report.lost == 0 and report.applied_twice == 0
    assert report.effects_expected > 0
    assert report.effects_missing == 0 and report.effects_twice == 0 and report.effects_unexpected == 0
    assert report.letters_expected > 0
    assert report.letters_found == report.letters_expected
    assert report.letters_duplicated == 0
