"""The effects' HTTP/1.1 client (streams/httpclient.py) against a scripted server in-process: what
it sends, keep-alive, answers of every shape it must read, and the failures it must tell apart."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from streams.effects import Effects, Outcome
from streams.httpclient import Answer, BrokenAnswer, ConnectFailed, HttpClient, _Connection
from streams.lanes import Lanes
from streams.worker import lanes_for
from tests.conftest import free_port
from tests.helpers import make_event

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
Script = Callable[[int, int, bytes], Awaitable[bytes | None]]  # (connection, request, head) -> answer


class Server:
    """Answers each request as `script` says (None: close without answering); counts connections
    and keeps every request's head and body."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection, served = self.connections, 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                served += 1
                answer = await self.script(connection, served, head)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if b"Connection: close" in answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> tuple[asyncio.Server, int]:
        port = free_port()
        return await asyncio.start_server(self.handle, "127.0.0.1", port, ssl=ssl_context), port


async def answer_ok(connection: int, request: int, head: bytes) -> bytes:
    return OK


@contextlib.asynccontextmanager
async def served(script: Script, path: str = "", **options: Any) -> AsyncIterator[tuple[Server, HttpClient]]:
    """A server answering as `script` says and a client of it (at `path`), both closed after."""
    server = Server(script)
    listening, port = await server.start()
    client = HttpClient(f"http://127.0.0.1:{port}{path}", **options)
    try:
        yield server, client
    finally:
        await client.close()
        listening.close()


async def test_calls_reuse_one_connection_and_send_one_complete_request() -> None:
    async with served(answer_ok, "/api/") as (server, client):
        answers = [await client.post(client.path_of("ship ments"), b'{"a":1}', b"Idempotency-Key: k1\r\n")
                   for _ in range(3)]
    assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 3
    assert server.connections == 1
    head, body = server.requests[0]
    assert head.startswith(b"POST /api/ship%20ments HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{client.port}\r\n".encode() in head
    assert b"Idempotency-Key: k1\r\n" in head and b"Content-Type: application/json\r\n" in head
    assert body == b'{"a":1}'


async def test_chunked_closing_and_unbounded_answers_are_read_whole() -> None:
    answers = {1: b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"4\r\nbusy\r\n5\r\n, try\r\n0\r\n\r\n",
               2: b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone",
               3: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"}

    async def script(connection: int, request: int, head: bytes) -> bytes:
        return answers[len(server.requests)]

    async with served(script, max_body=8) as (server, client):
        busy, created, unbounded = [await client.post(b"/x", b"{}") for _ in range(3)]
    assert (busy.status, busy.headers, busy.body) == (503, {"retry-after": "7"}, b"busy, tr")
    assert (created.status, created.body) == (201, b"done")
    assert (unbounded.status, unbounded.body) == (200, b"until th")
    assert server.connections == 2  # the service closed after the second answer


async def test_an_interim_answer_is_not_taken_for_the_answer() -> None:
    async def script(connection: int, request: int, head: bytes) -> bytes:
        return b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + \
            b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\noops"

    async with served(script) as (_server, client):
        answer = await client.post(b"/x", b"{}")
    assert (answer.status, answer.body) == (500, b"oops")


async def test_a_connection_the_service_closed_while_idle_is_replaced_once() -> None:
    async def script(connection: int, request: int, head: bytes) -> bytes | None:
        return None if (connection, request) == (1, 2) else OK  # closes instead of a second answer

    async with served(script) as (server, client):
        first, second = await client.post(b"/x", b"{}"), await client.post(b"/x", b"{}")
    assert (first.status, second.status) == (200, 200)
    assert server.connections == 2 and len(server.requests) == 3


async def test_an_answer_cut_short_of_its_length_is_a_broken_answer() -> None:
    async def script(connection: int, request: int, head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort"

    async with served(script) as (_server, client):
        with pytest.raises(BrokenAnswer, match="closed before the answer ended"):
            await client.post(b"/x", b"{}")


async def test_a_new_connection_closed_without_an_answer_is_a_broken_answer() -> None:
    async def script(connection: int, request: int, head: bytes) -> None:
        return None

    async with served(script) as (server, client):
        with pytest.raises(BrokenAnswer):
            await client.post(b"/x", b"{}")
    assert len(server.requests) == 1  # not repeated: the connection was new


async def test_a_late_answer_is_a_timeout_and_its_connection_is_not_used_again() -> None:
    async def script(connection: int, request: int, head: bytes) -> bytes:
        if connection == 1:
            await asyncio.sleep(0.5)
        return OK

    async with served(script, timeout_s=0.1) as (server, client):
        with pytest.raises(TimeoutError):
            await client.post(b"/x", b"{}")
        answer = await client.post(b"/x", b"{}")
    assert answer.status == 200 and server.connections == 2


class SlowService:
    """A script answering OK `seconds` after each request, counting the most it held at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.out = self.most_out = 0

    async def __call__(self, connection: int, request: int, head: bytes) -> bytes:
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        await asyncio.sleep(self.seconds)
        self.out -= 1
        return OK


async def test_calls_beyond_the_limit_wait_their_turn_and_their_timeout_starts_with_it() -> None:
    script = SlowService(0.15)
    # six calls, two at a time, 0.15 s each: the last two wait 0.3 s for their turn, longer than
    # the timeout, which counts from the turn (a call never sent must not fail as a timeout)
    async with served(script, timeout_s=0.25, limit=2) as (server, client):
        answers = await asyncio.gather(*(client.post(b"/x", b"{}") for _ in range(6)))
    assert [a.status for a in answers] == [200] * 6
    assert script.most_out == 2 and server.connections == 2


async def test_answers_that_close_their_connection_give_their_turn_back() -> None:
    async def script(connection: int, request: int, head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    async with served(script, limit=1) as (server, client):
        answers = await asyncio.wait_for(asyncio.gather(*(client.post(b"/x", b"{}") for _ in range(3))), 5)
    assert [a.status for a in answers] == [200] * 3
    assert server.connections == 3


async def test_a_call_timed_out_in_flight_hands_its_turn_to_the_next_on_a_new_connection() -> None:
    async def script(connection: int, request: int, head: bytes) -> bytes:
        if connection == 1:
            await asyncio.sleep(0.5)
        return OK

    async with served(script, timeout_s=0.2, limit=1) as (server, client):
        late, waiting = await asyncio.gather(client.post(b"/x", b"{}"), client.post(b"/x", b"{}"),
                                             return_exceptions=True)
    assert isinstance(late, TimeoutError)
    assert isinstance(waiting, Answer) and waiting.status == 200
    assert server.connections == 2  # the late answer's connection was dropped, not handed on


class RecordingTransport(asyncio.Transport):
    """A transport that keeps what is written (the test plays the service)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True


def connected(client: HttpClient) -> tuple[_Connection, RecordingTransport]:
    """An idle keep-alive connection of `client` over a recording transport."""
    transport = RecordingTransport()
    connection = _Connection(frozenset(), 1024, client._pass_on)
    connection.connection_made(transport)
    client._idle.append(connection)
    return connection, transport


async def test_the_next_waiting_call_is_sent_in_the_callback_that_read_the_answer() -> None:
    client = HttpClient("http://127.0.0.1:1", limit=1)
    connection, transport = connected(client)
    first = asyncio.create_task(client.post(b"/first", b"{}"))
    cancelled = asyncio.create_task(client.post(b"/cancelled", b"{}"))
    second = asyncio.create_task(client.post(b"/second", b"{}"))
    await asyncio.sleep(0)
    assert [w.split(b" ")[1] for w in transport.written] == [b"/first"]
    assert client.waiting == 2
    cancelled.cancel()
    await asyncio.sleep(0)
    connection.data_received(OK)  # no turn of the loop between the first answer and the next request
    assert [w.split(b" ")[1] for w in transport.written] == [b"/first", b"/second"]
    connection.data_received(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    assert ((await first).status, (await second).status) == (200, 201)
    assert cancelled.cancelled() and client.waiting == 0 and not transport.aborted


async def test_garbage_is_a_broken_answer_and_no_service_a_failed_connection() -> None:
    async def script(connection: int, request: int, head: bytes) -> bytes:
        return b"SMTP ready\r\n\r\n"

    server = Server(script)
    listening, port = await server.start()
    client, nobody = HttpClient(f"http://127.0.0.1:{port}"), HttpClient(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(BrokenAnswer, match="not an HTTP answer"):
            await client.post(b"/x", b"{}")
        with pytest.raises(ConnectFailed):
            await nobody.post(b"/x", b"{}")
    finally:
        await client.close()
        listening.close()


def test_an_address_it_cannot_use_is_refused_at_once() -> None:
    for url in ("http://[not-an-address", "ftp://example.com", "http://"):
        with pytest.raises(ValueError):
            HttpClient(url)


def self_signed(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh certificate for 127.0.0.1 and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_https_is_spoken_with_the_services_certificate_checked(tmp_path: Path) -> None:
    server_context, client_context = self_signed(tmp_path)
    server = Server(answer_ok)
    listening, port = await server.start(server_context)
    trusting = HttpClient(f"https://127.0.0.1:{port}", ssl_context=client_context)
    doubting = HttpClient(f"https://127.0.0.1:{port}")  # the system's authorities only
    try:
        answer = await trusting.post(b"/x", b"{}")
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await doubting.post(b"/x", b"{}")
    finally:
        await trusting.close()
        listening.close()
    assert answer.status == 200


async def test_a_redirect_is_not_followed_but_refused_with_where_it_pointed() -> None:
    async def script(connection: int, request: int, head: bytes) -> bytes:
        return b"HTTP/1.1 308 Moved\r\nLocation: https://new.example/shipments\r\nContent-Length: 0\r\n\r\n"

    server = Server(script)
    listening, port = await server.start()
    effects = Effects(f"http://127.0.0.1:{port}")
    try:
        result = await effects.call("shipments", make_event("o1", "paid"))
    finally:
        await effects.close()
        listening.close()
    assert result.outcome is Outcome.TERMINAL
    assert "HTTP 308" in result.message and "https://new.example/shipments" in result.message


async def test_the_workers_lanes_ready_an_order_behind_each_call_and_no_more_calls_go_out() -> None:
    """ORDERFLOW_LANES=2: four lanes, two calls out at once; the two orders readied behind them
    wait for a connection, and go out as answers free one."""
    script = SlowService(0.05)

    async with served(script, limit=2) as (server, client):
        lanes, done = Lanes(lanes_for(2)), asyncio.Event()
        answered: list[str] = []
        for n in range(8):
            async def job(order: str = f"o{n}") -> None:
                answer = await client.post(b"/x", order.encode())
                answered.append(f"{order}:{answer.status}")
            await lanes.submit(f"o{n}", None, job, lambda: len(answered) == 8 and done.set())
        for _ in range(1000):  # until the lanes have taken their orders (calls take 50 ms)
            if lanes.busy() == 4:
                break
            await asyncio.sleep(0.001)
        busy, waiting = lanes.busy(), client.waiting
        await asyncio.wait_for(done.wait(), 5)
        await lanes.stop()
    assert (busy, waiting) == (4, 2)  # four orders worked on, two of them waiting to call
    assert script.most_out == 2 and server.connections == 2
    assert sorted(answered) == sorted(f"o{n}:200" for n in range(8))


class ThreadedService:
    """A keep-alive service on a thread of its own, answering OK `delay_s` after each request: it
    answers while the event loop's thread is busy, as a service on another machine does."""

    def __init__(self, delay_s: float, tls: ssl.SSLContext | None = None) -> None:
        self.delay_s = delay_s
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        if self.tls is not None:
            connection = self.tls.wrap_socket(connection, server_side=True)
        with connection:
            pending = b""
            while True:
                data = connection.recv(65536)
                if not data:
                    return
                pending += data
                while b"\r\n\r\n" in pending:
                    head, pending = pending.split(b"\r\n\r\n", 1)
                    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:"))
                    while len(pending) < length:
                        pending += connection.recv(65536)
                    pending = pending[length:]
                    self.requests += 1
                    time.sleep(self.delay_s)
                    connection.sendall(OK)

    def close(self) -> None:
        self.listener.close()


def _until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


async def test_answers_that_came_are_read_and_the_next_call_sent_while_the_loop_is_busy() -> None:
    """A worker's loop is busy most of the time with effects, and reads sockets only between its
    turns; `read_answers` (asked by the lanes between jobs) reads an answer that came, completes
    its call and sends the next waiting one on its connection in the same step."""
    service = ThreadedService(delay_s=0.05)
    client = HttpClient(f"http://127.0.0.1:{service.port}", limit=1)
    try:
        first = asyncio.create_task(client.post(b"/x", b"{}"))
        second = asyncio.create_task(client.post(b"/x", b"{}"))
        while service.requests < 1:  # connected, the first request sent
            await asyncio.sleep(0.001)
        # from here on one step, the loop held: what the service answers (50 ms after each
        # request) is read by the client only
        assert _until(lambda: client.read_answers() == 1), "the answer that came was not read"
        assert _until(lambda: service.requests == 2), "the waiting call did not go out"
        assert _until(lambda: client.read_answers() == 1)
        assert not first.done()  # its task goes on when the loop turns, with the answer read
        assert ((await first).status, (await second).status) == (200, 200)
        assert client.read_answers() == 0  # no call out
    finally:
        await client.close()
        service.close()


async def test_https_answers_are_left_to_the_tls_transport(tmp_path: Path) -> None:
    """A TLS connection's bytes must go through its transport: an https client reads no answer
    itself, however long it has been there, and the loop's own read completes the call."""
    server_context, client_context = self_signed(tmp_path)
    service = ThreadedService(delay_s=0.02, tls=server_context)
    client = HttpClient(f"https://127.0.0.1:{service.port}", ssl_context=client_context)
    try:
        call = asyncio.create_task(client.post(b"/x", b"{}"))
        while service.requests < 1:
            await asyncio.sleep(0.001)
        time.sleep(0.2)  # the loop held: the answer (20 ms after the request) waits in the socket
        assert client.read_answers() == 0
        assert (await call).status == 200
    finally:
        await client.close()
        service.close()
