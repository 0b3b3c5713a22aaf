"""A worker stuck in a rebalance or recovery says what it waits on: partitions, fetch state, tasks."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import TopicPartition
from faust.types import TP

from streams.engine.supervision import watch_for_stuck
from streams.engine.waits import describe_waits


def stuck_app(loop: asyncio.AbstractEventLoop) -> Any:
    """A Faust app as `describe_waits` reads it, its consumer's aiokafka state real."""
    changelog, events = TopicPartition("orders-changelog", 1), TopicPartition("events", 1)
    subscription = SubscriptionState()
    subscription.assign_from_user({changelog, events})
    subscription.seek(changelog, 0)  # events stays awaiting its reset
    fetcher = SimpleNamespace(_in_flight={1}, _pending_tasks=set(), _records={changelog: object()})
    client = SimpleNamespace(_fetcher=fetcher, _subscription=subscription)
    flag = asyncio.Event()
    consumer = SimpleNamespace(
        flow_active=True, suspend_flow=flag, _active_partitions={TP("orders-changelog", 1)},
        _paused_partitions={TP("events", 1)}, _buffered_partitions=set(),
        _thread=SimpleNamespace(_consumer=client, thread_loop=None))
    return SimpleNamespace(consumer=consumer, flow_control=SimpleNamespace(is_active=lambda: True),
                           rebalancing=False, in_recovery=True, consumer_generation_id=2, loop=loop,
                           tables=SimpleNamespace(recovery=None))


async def test_the_description_names_partitions_their_fetch_state_and_the_waiting_tasks() -> None:
    never = asyncio.Event()

    async def _drain_messages() -> None:  # named as Faust's drain loop
        await never.wait()

    async def fetcher_service() -> None:  # Faust runs the drain loop inside a service's task
        await _drain_messages()

    task = asyncio.create_task(fetcher_service())
    await asyncio.sleep(0)
    try:
        report = describe_waits(stuck_app(asyncio.get_running_loop()))
    finally:
        task.cancel()
    assert "in recovery True" in report
    assert "active orders-changelog[1]; paused events[1]" in report
    assert ("orders-changelog[1] position 0 status PartitionStatus.CONSUMING paused False "
            "buffered object") in report
    assert "events[1] position None status PartitionStatus.AWAITING_RESET" in report
    waiting = report.split("\ntask ")[-1].splitlines()
    assert waiting[0].endswith("<locals>.fetcher_service:")
    assert [line.split()[-1] for line in waiting[1:]] == ["fetcher_service", "_drain_messages", "wait"]


async def test_a_long_recovery_is_described_once(caplog: pytest.LogCaptureFixture) -> None:
    app = stuck_app(asyncio.get_running_loop())
    app.rebalancing = True  # a rebalance that does not end
    caplog.set_level(logging.WARNING, "streams.engine.supervision")
    watch_for_stuck(app, 600.0, stop=lambda: None, every_s=0.02,
                    describe=lambda: describe_waits(app), describe_after_s=0.05)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "waiting on" not in caplog.text:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # time for a second report, were there one
    finally:
        app.rebalancing = False  # the watch thread (a daemon) goes on idle, never "stuck"
    reports = [r for r in caplog.records if "waiting on" in r.getMessage()]
    assert len(reports) == 1
    assert "orders-changelog[1] position 0" in reports[0].getMessage()
