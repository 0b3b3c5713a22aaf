"""HTTP effects of transitions through one keep-alive client (streams/httpclient.py), with
outcome classes.

Every request carries `Idempotency-Key: <event_id>` so a retried call is applied once downstream.
"""

from __future__ import annotations

import math

import orjson

from schemas.envelope import Envelope
from streams.core.outcomes import EffectResult, Outcome
from streams.httpclient import ConnectFailed, HttpClient, HttpError

__all__ = ["EffectResult", "Effects", "Outcome", "classify_status", "parse_retry_after"]

TRANSIENT_STATUSES = frozenset({408, 429})
MAX_RETRY_AFTER_S = 86_400.0  # a server's Retry-After is trusted up to a day (the backoff cap applies too)


def classify_status(status: int) -> Outcome:
    if status < 400:
        return Outcome.OK
    if status >= 500 or status in TRANSIENT_STATUSES:
        return Outcome.TRANSIENT
    return Outcome.TERMINAL


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is treated as absent)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


class Effects:
    """Calls `POST {base_url}/{effect}` for an event over keep-alive connections
    (streams/httpclient.py), at most `max_connections` at once."""

    def __init__(self, base_url: str, timeout_s: float = 10.0, max_connections: int = 100) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._client: HttpClient | None = None
        self.in_flight = 0  # calls waiting for their answer (the agent shares the loop sooner)

    @property
    def enabled(self) -> bool:
        return bool(self.base_url)

    async def call(self, effect: str, event: Envelope) -> EffectResult:
        """Run one effect for `event` and classify the answer."""
        client = self._client
        if client is None:
            if not self.base_url.startswith(("http://", "https://")):
                return EffectResult(Outcome.TERMINAL, f"bad effects URL {self.base_url!r}")
            try:
                client = self._client = HttpClient(self.base_url, self._timeout_s, self._max_connections,
                                                   wanted_headers=("retry-after", "location"))
            except ValueError as exc:
                return EffectResult(Outcome.TERMINAL, f"POST /{effect}: bad URL {exc}")
        key = event["event_id"]
        if "\r" in key or "\n" in key:  # ids are checked at ingest; a header must not be split anyway
            return EffectResult(Outcome.TERMINAL, f"POST /{effect}: the event id cannot be a header")
        body = orjson.dumps({"order_id": event["order_id"], "client_id": event["client_id"],
                             "event_id": key, "type": event["type"],
                             "payload": event.get("payload") or {}})
        self.in_flight += 1
        try:
            answer = await client.post(client.path_of(effect), body,
                                       b"Idempotency-Key: %s\r\n" % key.encode("utf-8"))
        except TimeoutError:
            return EffectResult(Outcome.TRANSIENT, f"POST /{effect}: timed out")
        except ConnectFailed as exc:
            return EffectResult(Outcome.TRANSIENT, f"POST /{effect}: connection error: {exc}")
        except HttpError as exc:  # a broken answer: try again later
            return EffectResult(Outcome.TRANSIENT, f"POST /{effect}: {exc}")
        finally:
            self.in_flight -= 1
        status = answer.status
        if 300 <= status < 400:
            return EffectResult(Outcome.TERMINAL, f"POST /{effect}: HTTP {status}, a redirect to "
                                f"{answer.headers.get('location', '?')} (not followed: point "
                                "ORDERFLOW_EFFECTS_URL at the service itself)")
        text = answer.body[:200].decode("utf-8", errors="replace")
        return EffectResult(classify_status(status), f"POST /{effect}: HTTP {status} {text}".strip(),
                            parse_retry_after(answer.headers.get("retry-after")))

    def read_answers(self) -> int:
        """Read the answers that have come, now, between turns of the event loop (the lanes ask
        this between jobs: streams/httpclient.py); how many."""
        client = self._client
        return client.read_answers() if client is not None else 0

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
