"""A tiny scripted HTTP effects service for integration tests (the real gateway is `orderflow gateway`)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (path, body, call number for this Idempotency-Key) -> (status, delay seconds)
Script = Callable[[str, dict, int], tuple[int, float]]


@contextmanager
def effects_server(script: Script) -> Iterator[tuple[str, Counter[str]]]:
    """Serve on a free loopback port; yields (base URL, calls per Idempotency-Key)."""
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            key = self.headers.get("Idempotency-Key", "")
            with lock:
                calls[key] += 1
                number = calls[key]
            status, delay = script(self.path, body, number)
            time.sleep(delay)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()
