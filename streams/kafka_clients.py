"""confluent-kafka clients in orderflow's own voice: their logs go through Python logging (the
`librdkafka` logger), and a broker that cannot be reached or refuses the credentials is one clear
line, found out before any work starts, instead of a stream of `%3|…|FAIL|` retries."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from streams.config import Settings
from streams.errors import BrokerError, OrderflowError

LIBRDKAFKA_LOG = logging.getLogger("librdkafka")
_REFUSED = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED,
            KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
            KafkaError.GROUP_AUTHORIZATION_FAILED}

#: linger.ms of the producers whose every record is followed by a flush that an ack waits for (the
#: changelog writer's and the change feed's). librdkafka's flush sends at once whatever linger
#: holds, so the long linger adds no latency; it sends a partition's records of one flush cycle in
#: one request instead of one every 5 ms while the paced writes go on: the broker's CPU per event
#: fell from 13-18 to 9.5 us (bench/RESULTS.md, 2026-12-05).
FLUSHED_LINGER_MS = 100


def client_config(settings: Settings) -> dict[str, Any]:
    """Connection settings (KAFKA_*) for a confluent-kafka client, its logs sent to Python logging."""
    return {**settings.librdkafka(), "logger": LIBRDKAFKA_LOG}


def preflight(settings: Settings, timeout_s: float = 20.0) -> None:
    """Raise BrokerError, with one line a person can act on, unless Kafka answers at
    KAFKA_BOOTSTRAP with these credentials within `timeout_s`."""
    errors: list[KafkaError] = []
    conf: dict[str, Any] = {**client_config(settings), "error_cb": errors.append}
    admin = AdminClient(conf)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=1.0)
            return
        except KafkaException as exc:
            errors.append(exc.args[0])
        admin.poll(0)  # serves error_cb
        refused = [e for e in errors if isinstance(e, KafkaError) and e.code() in _REFUSED]
        if refused:
            who = f"user {settings.sasl_username!r} ({settings.sasl_mechanism or 'SASL'})" \
                if settings.sasl_username else "this client"
            raise BrokerError(f"Kafka at {settings.bootstrap} refused {who}: {refused[0].str()}; "
                              "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        if time.monotonic() >= deadline:
            raise BrokerError(f"no Kafka broker answered at {settings.bootstrap} within {timeout_s:g}s "
                              f"(KAFKA_BOOTSTRAP, KAFKA_SECURITY_PROTOCOL={settings.security_protocol})")


def open_topic(settings: Settings, topic: str, purpose: str,
               hint: str = "") -> tuple[Any, list[int], dict[int, int]]:
    """A consumer of `topic` for a command (no group commits), the topic's partitions, and the end
    offset of each partition that holds anything; one clear error if Kafka or the topic is not there.
    The caller closes the consumer."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**client_config(settings), "group.id": f"orderflow-{purpose}-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        try:
            found = consumer.list_topics(topic, timeout=10).topics[topic]
        except KafkaException as exc:
            raise BrokerError(f"cannot reach Kafka at {settings.bootstrap}: {exc}") from None
        if found.error is not None:
            raise OrderflowError(f"topic {topic}: {found.error.str()}{hint}")
        ends: dict[int, int] = {}
        for p in found.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
    except BaseException:
        consumer.close()
        raise
    return consumer, sorted(found.partitions), ends
