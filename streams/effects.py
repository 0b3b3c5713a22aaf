"""HTTP effects of transitions through one shared aiohttp session, with outcome classes.

Every request carries `Idempotency-Key: <event_id>` so a retried call is applied once downstream.
"""

from __future__ import annotations

import asyncio
import math

import aiohttp
import orjson
from yarl import URL

from schemas.envelope import Envelope
from streams.core.outcomes import EffectResult, Outcome

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
    """Calls `POST {base_url}/{effect}` for an event; one session, bounded connections."""

    def __init__(self, base_url: str, timeout_s: float = 10.0, max_connections: int = 100) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}  # effect -> its URL, parsed once (yarl per call is costly)

    @property
    def enabled(self) -> bool:
        return bool(self.base_url)

    async def call(self, effect: str, event: Envelope) -> EffectResult:
        """Run one effect for `event` and classify the answer."""
        if not self.base_url.startswith(("http://", "https://")):
            return EffectResult(Outcome.TERMINAL, f"bad effects URL {self.base_url!r}")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                cookie_jar=aiohttp.DummyCookieJar(),  # an effects service sets no session for us
            )
        body = orjson.dumps({"order_id": event["order_id"], "client_id": event["client_id"],
                             "event_id": event["event_id"], "type": event["type"],
                             "payload": event.get("payload") or {}})
        url = self._urls.get(effect)
        if url is None:
            try:
                url = self._urls[effect] = URL(f"{self.base_url}/{effect}")
            except ValueError as exc:
                return EffectResult(Outcome.TERMINAL, f"POST /{effect}: bad URL {exc}")
        try:
            async with self._session.post(
                url, data=body,
                headers={"Idempotency-Key": event["event_id"], "Content-Type": "application/json"},
            ) as response:
                text = (await response.read())[:200].decode("utf-8", errors="replace")
                outcome = classify_status(response.status)
                return EffectResult(
                    outcome, f"POST /{effect}: HTTP {response.status} {text}".strip(),
                    parse_retry_after(response.headers.get("Retry-After")),
                )
        except TimeoutError:
            return EffectResult(Outcome.TRANSIENT, f"POST /{effect}: timed out")
        except aiohttp.ClientConnectionError as exc:
            return EffectResult(Outcome.TRANSIENT, f"POST /{effect}: connection error: {exc}")
        except aiohttp.InvalidURL as exc:
            return EffectResult(Outcome.TERMINAL, f"POST /{effect}: bad URL {exc}")
        except aiohttp.ClientError as exc:  # a broken answer (payload, headers): try again later
            return EffectResult(Outcome.TRANSIENT, f"POST /{effect}: {type(exc).__name__}: {exc}")
        except asyncio.CancelledError:
            raise

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
