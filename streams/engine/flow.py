"""Stream partitions that Faust stopped fetching and never started again.

Faust takes a partition out of its fetch set when the agent's queue is under pressure
(`Consumer.on_buffer_full`) and puts it back when mode's queue calls the partition's pressure-drop
callback as the queue drains (`on_buffer_drop`); it also pauses stream partitions during a recovery
and resumes them all when the recovery completes. In a chaos run (bench/chaos.py) a restarted
worker took over two partitions, processed a burst of their backlog, and then never fetched them
again: thousands of events behind, the worker otherwise healthy, idle, and ready. So once the
recovery is complete, no rebalance is under way and the agent's queue has drained, an assigned
stream partition out of the fetch set (paused or not) is put back, as Faust's own end of recovery
would; each time is logged with Faust's sets.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

log = logging.getLogger(__name__)


def refetch_starved(app: Any, queue: Any, topics: Collection[str]) -> list[Any]:
    """Put starved stream partitions back into Faust's fetch set; the ones put back."""
    recovery = getattr(app.tables, "recovery", None)
    if app.rebalancing or app.in_recovery or recovery is None or not recovery.completed.is_set():
        return []
    if not app.flow_control.is_active() or queue.qsize() > queue.pressure_drop_size:
        return []
    consumer = app.consumer
    active = consumer._get_active_partitions()
    paused = consumer._paused_partitions
    starved = [tp for tp in consumer.assignment() if tp.topic in topics and tp not in active]
    if starved:
        log.warning("partitions %s were out of Faust's fetch set with the queue drained (%d queued, "
                    "paused %s, buffered %s, pressure callbacks pending %d); fetching them again",
                    sorted((tp.topic, tp.partition) for tp in starved), queue.qsize(),
                    sorted((tp.topic, tp.partition) for tp in paused & set(starved)),
                    sorted((tp.topic, tp.partition) for tp in consumer._buffered_partitions),
                    len(getattr(queue, "_pending_pressure_drop_callbacks", ())))
        for tp in starved:
            consumer._buffered_partitions.discard(tp)
            paused.discard(tp)
            active.add(tp)
    return starved
