"""Fuzz every HTTP route of a real worker: odd paths, ids, query strings, methods and headers never
get a 500, and every error is JSON. Ids the ingest accepts can be asked for, URL-encoded.

(A request that is not HTTP at all, e.g. a control character in a header value, is refused by
aiohttp's parser with a plain-text 400 before any route sees it; that is outside the routes.)"""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.tools.publisher import Publisher
from tests.conftest import SettingsFactory
from tests.helpers import make_event
from tests.workers import Worker, wait_for

ODD_IDS = ["order/1", "order 2", "Bestellung-ä", "注文:7", "%2F", "..", "a?b#c", "x" * 128]
ROUTES = ["/orders/{id}", "/orders/{id}/", "/clients/{id}/orders", "/clients/{id}/orders/", "/stats",
          "/stats/", "/metrics", "/health", "/ready", "/", "/router/", "/table/orders/", "/{id}"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
NOT_JSON_OK = {"/", "/metrics", "/metrics/"}  # the dashboard (HTML) and Prometheus text, when they answer 200

segment = st.one_of(
    st.sampled_from(ODD_IDS).map(lambda t: quote(t, safe="")),
    st.sampled_from(["order/1", "..", "a?b", "%", "%zz"]),
    st.text(max_size=200).map(lambda t: quote(t, safe="")),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
    st.binary(max_size=30).map(lambda b: "".join(f"%{x:02X}" for x in b)),
)
printable = st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="#")
query = st.one_of(st.just(""), st.text(printable, max_size=60).map(lambda t: "?" + t),
                  st.sampled_from(["?local=1", "?limit=-1", "?limit=99999999999999999999", "?after=%00"]))
headers = st.dictionaries(st.sampled_from(["Accept", "Content-Type", "X-Odd", "Cookie", "Range"]),
                          st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]),
                                  max_size=50), max_size=3)


def _request(worker: Worker, method: str, path: str, extra: dict[str, str]) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=15)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in extra.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


def test_every_route_answers_json_errors_and_never_500(settings_factory: SettingsFactory,
                                                       start_worker) -> None:
    worker_settings = settings_factory(ORDERFLOW_PARTITIONS="2")
    worker = start_worker(worker_settings)
    assert Publisher(worker_settings).publish(
        [make_event(oid, "created", client_id=f"c {oid}"[:128]) for oid in ODD_IDS]).ok
    for order_id in ODD_IDS:  # every id the ingest accepts can be asked for, URL-encoded
        body = wait_for(lambda oid=order_id: (r := worker.get(f"/orders/{quote(oid, safe='')}"))[0] == 200
                        and r[1], timeout=30, what=f"order {order_id!r}")
        assert body["order_id"] == order_id
    assert worker.get("/orders/a%00b")[0] == 400  # what the ingest refuses is a 400, as JSON

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(METHODS), st.sampled_from(ROUTES), segment, query, headers)
    def one(method: str, route: str, seg: str, q: str, extra: dict[str, str]) -> None:
        path = route.replace("{id}", seg) + q
        if not path.startswith("/") or " " in path:
            path = "/" + quote(path.lstrip("/"), safe="/%?=&")
        status, kind, body = _request(worker, method, path, extra)
        assert status < 500, (method, path, status, body[:300])
        bare = path.split("?")[0]
        if method == "HEAD" or status == 204 or (status == 200 and bare in NOT_JSON_OK):
            return
        if status in (301, 302, 304, 307, 308):
            return
        assert "json" in kind, (method, path, status, kind, body[:200])
        json.loads(body)

    one()
    assert worker.proc is not None and worker.proc.poll() is None
