"""Faust's per-message path made lean: its aiokafka transport, minus four new tasks per message,
and a schema that hands over a message's bytes as they are.

Faust's `Consumer._drain_messages` delivers every fetched message with
`wait_first(callback(message), suspend_flow.wait())`, which wraps the callback, the suspend flag,
and the consumer's stopped and crashed flags in a task each, waits for the first, and cancels the
rest: several event-loop turns per message, in every Faust app. Our profile of the worker put that
above everything our processor does per event. Its purpose is to never block draining while the
flow is stopped (a rebalance or a table recovery: the recovery needs the changelog messages this
same loop delivers). So here, while the flow runs, the conductor's callback is awaited directly
(its flow-control wait returns at once then; a full channel queue or producer buffer waits as
backpressure, as it should); while the flow is stopped, Faust's own `wait_first` is used unchanged.
The rest of the loop is Faust's (faust-streaming 0.15.3, `faust/transport/consumer.py`).

`RawBytes`: Faust's `raw` serializer still runs each key and value through its codec registry
(several calls and settings lookups per message); the agent decodes and validates bytes itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as driver

YIELD_EVERY = 100


class Consumer(driver.Consumer):
    async def _drain_messages(self, fetcher: Any) -> None:  # the fetcher's background loop
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        suspend_flow = self.suspend_flow
        flow_control = self.app.flow_control
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = self.getmany(timeout=1.0)
                await self.sleep(0)  # getmany may return at once, again and again
                if self.should_stop:
                    continue
                async for tp, message in fetched:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    last = read_offset[tp]
                    if last is not None and offset < last:
                        continue  # already delivered (Faust drops these too)
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if flow_control.is_active() and not suspend_flow.is_set():
                        await callback(message)
                    else:
                        await self.wait_first(callback(message), suspend_flow.wait())
                    read_offset[tp] = offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class Transport(driver.Transport):
    Consumer = Consumer


class RawBytes(faust.Schema):
    """Key and value exactly as Kafka delivered them (bytes, or None)."""

    def loads_key(self, app: Any, message: Any, *, loads: Any = None, serializer: Any = None) -> Any:
        return message.key

    def loads_value(self, app: Any, message: Any, *, loads: Any = None, serializer: Any = None) -> Any:
        return message.value
