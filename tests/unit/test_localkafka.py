"""The local broker's KRaft cluster id: Kafka's format tool refuses one that starts with `-`."""

from __future__ import annotations

import uuid

import pytest

from streams.tools import localkafka


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 as the first byte encodes to "-" first in URL-safe base64: what broke 1 fresh dir in 64.
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" + bytes(15))])
    monkeypatch.setattr(localkafka.uuid, "uuid4", lambda: next(draws))
    cluster_id = localkafka.new_cluster_id()
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22  # 16 bytes, unpadded base64, as Kafka's Uuid prints them


def test_random_cluster_ids_are_all_valid() -> None:
    ids = {localkafka.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert not any(i.startswith("-") for i in ids)
