"""Settings from the environment: defaults, validation, security passthrough."""

from __future__ import annotations

import pytest

from streams.config import Settings
from streams.errors import ConfigError


def test_defaults_match_the_contract() -> None:
    settings = Settings.from_env({})
    assert settings.bootstrap == "127.0.0.1:9092"
    assert settings.partitions == 8
    assert (settings.events_topic, settings.retry_topic, settings.dlq_topic) == (
        "orders.events", "orders.retry", "orders.dlq")
    assert settings.idempotency_retention_s == 7 * 24 * 3600


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ORDERFLOW_PARTITIONS": "eight"}, "not a whole number"),
        ({"ORDERFLOW_PARTITIONS": "0"}, "at least 1"),
        ({"ORDERFLOW_RETRY_BASE_S": "5", "ORDERFLOW_RETRY_CAP_S": "1"}, "CAP_S"),
        ({"ORDERFLOW_ON_TERMINAL_FAILURE": "shrug"}, "release"),
        ({"ORDERFLOW_GC_THRESHOLD": "50000,20"}, "three positive whole numbers"),
        ({"ORDERFLOW_GC_THRESHOLD": "0,10,10"}, "three positive whole numbers"),
    ],
)
def test_bad_values_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(("raw", "threshold"), [
    ("", (50_000, 20, 100)), ("python", None), ("1000, 10, 10", (1000, 10, 10))])
def test_the_garbage_collector_thresholds(raw: str, threshold: tuple[int, int, int] | None) -> None:
    assert Settings.from_env({"ORDERFLOW_GC_THRESHOLD": raw}).gc_threshold == threshold


def test_security_settings_reach_the_kafka_clients() -> None:
    settings = Settings.from_env({
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "s3cret", "KAFKA_SSL_CAFILE": "/ca.pem",
    })
    assert settings.librdkafka() == {
        "bootstrap.servers": "127.0.0.1:9092", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u", "sasl.password": "s3cret",
        "ssl.ca.location": "/ca.pem",
    }
    assert "s3cret" not in repr(settings)
