"""`orderflow orders get|list`: the views of any worker, read from a terminal (standard library
HTTP: one GET per page, nothing to install)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from streams.errors import OrderflowError

DEFAULT_URL = "http://localhost:6066"


def fetch(base_url: str, path: str, timeout_s: float = 30.0) -> Any:
    """GET a view; an error answer or an unreachable worker is one OrderflowError line."""
    url = base_url.rstrip("/") + path
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", "")
        except ValueError:
            detail = ""
        raise OrderflowError(f"{url}: HTTP {exc.code}{': ' + detail if detail else ''}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OrderflowError(f"no worker answered at {base_url} ({reason}); give one with --url") from None


def order(base_url: str, order_id: str) -> dict[str, Any]:
    return dict(fetch(base_url, f"/orders/{urllib.parse.quote(order_id, safe='')}"))


def client_orders(base_url: str, client_id: str, status: str | None = None,
                  page_size: int = 500) -> Iterator[dict[str, Any]]:
    """Every order of the client, newest first, page after page (the views' cursor)."""
    after: str | None = None
    while True:
        query = {"limit": str(page_size), **({"status": status} if status else {}),
                 **({"after": after} if after else {})}
        page = fetch(base_url, f"/clients/{urllib.parse.quote(client_id, safe='')}/orders?"
                               + urllib.parse.urlencode(query))
        yield from page.get("orders", [])
        after = page.get("next")
        if not after:
            return


def order_line(view: dict[str, Any]) -> str:
    """One order as a line of a table: id, status, version, pending, last change."""
    pending = view.get("pending") or {}
    waiting = []
    if pending.get("retry"):
        waiting.append(f"retry #{pending['retry'].get('attempts')}")
    if pending.get("parked"):
        waiting.append(f"{pending['parked']} parked")
    if view.get("stuck"):
        waiting.append("stuck")
    return (f"{view.get('order_id', ''):<24} {view.get('status', ''):<12} v{view.get('version', 0):<4} "
            f"{view.get('updated_at', ''):<22} {', '.join(waiting)}").rstrip()
