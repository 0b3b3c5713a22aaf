"""Creating orderflow's topics with the shape the configuration asks for, or saying why not."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config import Settings
from streams.errors import TopicMismatch
from streams.kafka_clients import client_config

WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """What one topic must look like."""

    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The four orderflow topics; all keyed by client_id and co-partitioned.

    None is compacted: their keys are clients, not entities, so compaction would drop events.
    Dead letters are kept four weeks so there is time to look at them and replay; the change feed
    a week, like the events it follows.
    """
    n = settings.partitions
    return [
        TopicSpec(settings.events_topic, n, {"retention.ms": str(WEEK_MS)}),
        TopicSpec(settings.retry_topic, n, {"retention.ms": str(WEEK_MS)}),
        TopicSpec(settings.dlq_topic, n, {"retention.ms": str(4 * WEEK_MS)}),
        *([TopicSpec(settings.changes_topic, n, {"retention.ms": str(WEEK_MS)})]
          if settings.changes_topic else []),
    ]


def create_topics(settings: Settings, timeout_s: float = 30.0) -> dict[str, str]:
    """Create missing topics; accept same-shaped existing ones; raise TopicMismatch otherwise.

    Returns each topic's name with "created" or "exists".
    """
    admin = AdminClient(client_config(settings))
    specs = topic_specs(settings)
    existing = admin.list_topics(timeout=timeout_s).topics
    outcome: dict[str, str] = {}
    for spec in specs:
        meta = existing.get(spec.name)
        if meta is not None and meta.error is None:
            found = len(meta.partitions)
            if found != spec.partitions:
                raise TopicMismatch(
                    f"topic {spec.name} has {found} partitions, the configuration asks for "
                    f"{spec.partitions} (ORDERFLOW_PARTITIONS); orderflow never changes an existing "
                    "topic: delete it or set ORDERFLOW_PARTITIONS to match"
                )
            outcome[spec.name] = "exists"
    missing = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=settings.replication,
                 config=s.config)
        for s in specs if s.name not in outcome
    ]
    if missing:
        for name, future in admin.create_topics(missing, request_timeout=timeout_s).items():
            try:
                future.result()
                outcome[name] = "created"
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
                outcome[name] = "exists"
    return outcome
