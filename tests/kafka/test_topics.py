"""`orderflow topics create` against the real broker."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from streams.errors import TopicMismatch
from streams.tools.topics import create_topics
from tests.conftest import SettingsFactory


def test_creates_all_topics_with_the_configured_partitions(settings_factory: SettingsFactory) -> None:
    settings = settings_factory(ORDERFLOW_PARTITIONS="5")
    assert set(create_topics(settings).values()) == {"created"}
    topics = AdminClient(settings.librdkafka()).list_topics(timeout=10).topics
    for name in (settings.events_topic, settings.retry_topic, settings.dlq_topic, settings.changes_topic):
        assert len(topics[name].partitions) == 5


def test_same_shape_is_fine_and_a_mismatch_is_a_clear_error(settings_factory: SettingsFactory) -> None:
    create_topics(settings_factory(ORDERFLOW_PARTITIONS="3"))
    assert set(create_topics(settings_factory(ORDERFLOW_PARTITIONS="3")).values()) == {"exists"}
    with pytest.raises(TopicMismatch, match="has 3 partitions, the configuration asks for 6"):
        create_topics(settings_factory(ORDERFLOW_PARTITIONS="6"))
