"""A lean HTTP/1.1 client for effect calls: keep-alive connections, one write per request, the
answer parsed by httptools (llhttp, the parser of Node.js, as uvicorn uses it).

Why not aiohttp's client: with effects, the worker's event loop thread is the limit, and each
call through `ClientSession.post` cost it about 100 µs (a request object, its headers' multidict,
a writer task, a response object and its stream reader, a timer context), more than all the rest
of an event (46 µs). This client writes a request in one `transport.write` of bytes built with
one format and hands the answer back through one future: about 35 µs per call on the same
machine and gateway (bench/RESULTS.md, 2026-12-04). Written by hand because what is needed is
small and fixed (a POST to one service, a status, a header, a body) while a general client
carries what an effect call never uses.

What it does: POSTs a body to paths of one origin (http or https), at most `limit` calls out at
once over keep-alive connections (the others wait their turn, oldest first, and a connection
freed by an answer carries the next waiting request at once: see `HttpClient`); returns the
status, the headers asked for, and the body (at most `max_body` bytes kept, the rest read and
dropped so the connection can be used again); a total timeout per call from its turn (connecting
included). A connection the server closed while it was idle is
noticed when the call on it gets no answer at all, and the call is made once more on a new
connection (an effect call carries an Idempotency-Key, so a repeat is harmless). What it does
not do: redirects (a 3xx answer is returned as it is), proxies, cookies, compression, HTTP/2.

**Answers read between jobs** (`read_answers`). The event loop reads a socket only between its
turns, and a worker with effects keeps its loop busy most of the time: an answer waited 2.3 ms on
average for the turn in progress to end (p90 5.6 ms, p99 12; timed per call on both sides, the
turn lengths from the loop's own epoll calls: bench/RESULTS.md, 2026-12-05 22:46-00:05). Those
milliseconds count against every call of a lane, so the worker's lanes ask the client to read
what has come every quarter millisecond of their work (`streams/lanes.py`): one `epoll_wait` with
no timeout over the connections with a call out, and each answer found is read from its socket and
parsed at once, its connection handing the next waiting request on in the same step. The loop's
transport finds nothing left to read and carries on. Over plain http only: a TLS connection's bytes
must go through its transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httptools

__all__ = ["Answer", "BrokenAnswer", "ConnectFailed", "HttpClient", "HttpError"]


class HttpError(Exception):
    """The call got no complete answer."""


class ConnectFailed(HttpError):
    """No connection to the service (refused, unreachable, name not found, TLS handshake)."""


class BrokenAnswer(HttpError):
    """The connection closed before a complete answer, or the answer was not HTTP."""


@dataclass(slots=True)  # not frozen: one is made per call, and a frozen one's `__init__` costs twice
class Answer:
    status: int
    headers: dict[str, str]  # the names asked for (lower case) that the answer carried
    body: bytes  # its first `max_body` bytes


_DELIMITING = frozenset({b"content-length", b"transfer-encoding"})


class _Call:
    """One request on its way: its bytes, the future of its answer (None: "a slot is yours, open a
    connection"), the connection carrying it, its timer."""

    __slots__ = ("connection", "deadline", "future", "passed_on", "request", "retried", "slot", "timer")

    def __init__(self, request: bytes, future: asyncio.Future[Answer | None]) -> None:
        self.request = request
        self.future = future
        self.connection: _Connection | None = None
        self.slot = False  # it holds one of the client's `limit` slots
        self.passed_on = False  # its answer came and its connection (and slot) went to the next call
        self.retried = False  # sent once more on a new connection (see `_Connection._fail`)
        self.deadline = 0.0  # the loop's time its timeout ends
        self.timer: asyncio.TimerHandle | None = None


def _expire(call: _Call) -> None:
    if not call.future.done():
        call.future.set_exception(TimeoutError())


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives; when an
    answer ends and the connection can carry another, `pass_on` gets it at once."""

    def __init__(self, wanted: frozenset[bytes], max_body: int,
                 pass_on: Callable[[_Connection], None], answers: _AnswerWatch | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.fd = -1  # its socket's, while `answers` watches it
        self._answers = answers
        self.closed = False
        self.reused = False  # it carried an answer before the current call
        self._wanted = wanted
        self._max_body = max_body
        self._pass_on = pass_on
        self._parser = httptools.HttpResponseParser(self)
        self._call: _Call | None = None
        self._reset()

    def _reset(self) -> None:
        self.received = False  # a byte of the current answer came
        self.keep_alive = True
        self._headed = False  # the current answer's status and headers came
        self._delimited = False  # ... with a length or chunks (else it ends with the connection)
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._kept = 0

    def send(self, call: _Call) -> None:
        assert self.transport is not None
        self._reset()
        self._call = call
        call.connection = self
        self.transport.write(call.request)

    def abort(self) -> None:
        """Drop the connection (a timed-out call: its answer may still come, and must not be
        taken for the next call's)."""
        self.closed = True
        self._unwatch()
        if self.transport is not None:
            self.transport.abort()

    def awaits_answer(self) -> bool:
        return self._call is not None

    def read_now(self) -> None:
        """Read and parse what came on the socket now, between turns of the loop (`_AnswerWatch`);
        whatever is left (an end of the stream, an error) the transport finds in its next turn."""
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # nothing there after all, or the connection broke: the transport's to see
            return
        if data:
            self.data_received(data)

    def _unwatch(self) -> None:
        if self._answers is not None and self.fd >= 0:
            self._answers.forget(self)

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self._answers is not None and transport.get_extra_info("sslcontext") is None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                self._answers.watch(self, sock.fileno())

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BrokenAnswer("the service asked to switch protocols"))
        except httptools.HttpParserError as exc:
            self._fail(BrokenAnswer(f"not an HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._unwatch()
        if self._headed and not self._delimited and exc is None:  # it ends with its connection
            self.keep_alive = False
            self._complete()
        else:
            self._fail(BrokenAnswer("the connection closed before the answer ended"
                                    + (f" ({exc})" if exc is not None else "")))

    # -- httptools' callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _DELIMITING:
            self._delimited = True
        if name in self._wanted:
            self._headers[name.decode("latin-1")] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._headed = True

    def on_body(self, body: bytes) -> None:
        room = self._max_body - self._kept
        if room > 0:
            self._body.append(body[:room])
            self._kept += min(room, len(body))

    def on_message_complete(self) -> None:
        if 100 <= self._parser.get_status_code() < 200:  # an interim answer (103 Early Hints): the
            self._headers, self._body, self._kept = {}, [], 0  # answer is the one after it
            self._headed = self._delimited = False
            return
        self.keep_alive = self._parser.should_keep_alive()
        self._complete()

    def _complete(self) -> None:
        call, self._call = self._call, None
        if call is None or call.future.done():  # timed out: its coroutine drops the connection
            return
        if call.timer is not None:
            call.timer.cancel()
        call.future.set_result(Answer(self._parser.get_status_code(), self._headers, b"".join(self._body)))
        if self.keep_alive and not self.closed:
            self.reused = call.passed_on = True
            self._pass_on(self)  # the next call goes out now, not when the loop gets to its task

    def _fail(self, error: HttpError) -> None:
        call, self._call = self._call, None
        if call is not None and not call.future.done():
            if self.reused and not self.received and not call.retried:
                # closed by the service while idle (no byte of an answer): once more, anew (an
                # effect call carries an Idempotency-Key, so a repeat is harmless)
                call.retried, call.connection = True, None
                call.future.set_result(None)
            else:
                if call.timer is not None:
                    call.timer.cancel()
                call.future.set_exception(error)
        if self.transport is not None and not self.closed:
            self.closed = True
            self._unwatch()
            self.transport.close()


class _AnswerWatch:
    """The sockets of a client's plain-http connections, in one epoll set (poll where there is no
    epoll), for `HttpClient.read_answers`."""

    def __init__(self) -> None:
        self._poller: Any = select.epoll() if hasattr(select, "epoll") else select.poll()  # macOS: poll
        self._by_fd: dict[int, _Connection] = {}

    def watch(self, connection: _Connection, fd: int) -> None:
        try:
            try:
                self._poller.register(fd, select.POLLIN)
            except FileExistsError:  # the number of a socket closed since, its entry not yet gone
                self._poller.modify(fd, select.POLLIN)
        except (OSError, ValueError):  # closed with its client: the loop alone reads this one
            return
        connection.fd = fd
        self._by_fd[fd] = connection

    def forget(self, connection: _Connection) -> None:
        fd, connection.fd = connection.fd, -1
        if self._by_fd.get(fd) is connection:
            del self._by_fd[fd]
            with contextlib.suppress(OSError, KeyError, ValueError):
                self._poller.unregister(fd)

    def read(self) -> int:
        """Read every answer that has come, on connections with a call out; how many were read."""
        if not self._by_fd:
            return 0
        read = 0
        for fd, _events in self._poller.poll(0):
            connection = self._by_fd.get(fd)
            if connection is not None and connection.awaits_answer():
                connection.read_now()
                read += 1
        return read

    def close(self) -> None:
        self._by_fd.clear()
        close = getattr(self._poller, "close", None)  # an epoll set has a descriptor to close
        if close is not None:
            close()


class HttpClient:
    """POSTs to `base_url`'s origin; `ValueError` at construction for a URL it cannot use.

    At most `limit` calls are out at once; the others wait their turn, oldest first, and their
    timeout starts when they get it. A call's connection goes to the next waiting call the moment
    its answer is read, in the same callback: the next request is written then, not when the event
    loop next runs that call's task. The worker readies more orders than it lets call (streams/
    worker.py); answers often come while its loop is busy and are read together in one turn, and
    handed on through the tasks each turn waited for the others' work before it: against a service
    answering in 20 ms, 86% of 64 calls / 20 ms with the turn passed through the tasks, 90-92% with
    it passed here (bench/RESULTS.md, 2026-12-05)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0, limit: int = 100,
                 wanted_headers: tuple[str, ...] = ("retry-after",), max_body: int = 1024,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)  # ValueError for a malformed address (an unclosed IPv6 bracket)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http:// or https:// address")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self._path = parts.path.rstrip("/")
        default_port = (parts.scheme, self.port) in (("http", 80), ("https", 443))
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = (host if default_port else f"{host}:{self.port}").encode("idna")
        self.timeout_s = timeout_s
        self._wanted = frozenset(name.lower().encode() for name in wanted_headers)
        self._max_body = max_body
        self.limit = limit
        self._out = 0  # calls holding a slot
        self._waiting: deque[_Call] = deque()  # calls waiting for a slot, oldest first
        self._idle: list[_Connection] = []
        self._paths: dict[str, bytes] = {}
        self._closed = False
        # plain-http connections' sockets, read between turns of the loop (`read_answers`)
        self._answers = _AnswerWatch() if self._ssl is None else None
        # the loop it runs on, asked once: `asyncio.get_running_loop` is a `getpid` system call
        # each time on Python 3.11, twice per call here
        self._loop: asyncio.AbstractEventLoop | None = None

    def path_of(self, name: str) -> bytes:
        """The request path of `name` under the base URL's path (quoted, made once per name)."""
        path = self._paths.get(name)
        if path is None:
            path = self._paths[name] = f"{self._path}/{quote(name, safe='/-._~')}".encode("ascii")
        return path

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot."""
        return len(self._waiting)

    def read_answers(self) -> int:
        """Read the answers that have come and not been read yet, now, without waiting for the
        event loop's turn to end (see the module docstring); how many. Each completes its call and
        hands its connection on to the next waiting request, as the loop's own read would."""
        if self._answers is None or self._out == 0:
            return 0
        return self._answers.read()

    async def post(self, path: bytes, body: bytes, headers: bytes = b"") -> Answer:
        """POST `body` (JSON) to `path` with extra `headers` (complete `Name: value\\r\\n` lines);
        TimeoutError past the timeout, HttpError for no complete answer."""
        request = (b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n%s\r\n%s"
                   % (path, self._host_header, len(body), headers, body))
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        call = _Call(request, loop.create_future())
        if self._out < self.limit and not self._waiting:
            self._out += 1
            self._start(call, self._take_idle())
        else:
            self._waiting.append(call)  # a slot is given on by `_pass_on` or `_release`
        try:
            while True:
                answer = await call.future
                if answer is not None:
                    if not call.passed_on:  # its connection ended with the answer: the slot is free
                        self._drop(call)
                    return answer
                # a slot and no connection (none idle, or the last one closed while idle): a new one
                call.future = loop.create_future()
                async with asyncio.timeout_at(call.deadline):
                    connection = await self._connect()
                connection.send(call)
        except BaseException:  # timed out, failed, cancelled: give back its slot
            self._drop(call)
            raise

    async def close(self) -> None:
        """Close the idle connections; a call in flight closes its own when it ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.abort()
        if self._answers is not None:  # a call still out reads its answer through the loop
            self._answers.close()
            self._answers = None

    def _start(self, call: _Call, connection: _Connection | None) -> None:
        """The call holds a slot from now: its timeout starts, and it goes out on `connection`,
        or (None) its coroutine opens one."""
        loop = self._loop
        assert loop is not None  # set by `post`, the only way a call comes
        call.slot = True
        call.deadline = loop.time() + self.timeout_s
        call.timer = loop.call_at(call.deadline, _expire, call)
        if connection is not None:
            connection.send(call)
        else:
            call.future.set_result(None)

    def _next_waiting(self) -> _Call | None:
        while self._waiting:
            call = self._waiting.popleft()
            if not call.future.done():  # else cancelled while it waited
                return call
        return None

    def _pass_on(self, connection: _Connection) -> None:
        """An answer ended on `connection`, which can carry another: the next waiting call takes
        it (and the slot), else it waits idle."""
        if self._closed:
            connection.abort()
            self._release()
            return
        call = self._next_waiting()
        if call is not None:
            self._start(call, connection)
        else:
            self._out -= 1
            self._idle.append(connection)

    def _release(self) -> None:
        """A slot is free without a connection to pass on: the next waiting call opens one."""
        call = self._next_waiting()
        if call is not None:
            self._start(call, None)
        else:
            self._out -= 1

    def _drop(self, call: _Call) -> None:
        """The call is over without handing its connection on (failed, timed out, cancelled, or
        answered on a connection that ends): its slot goes to the next waiting call."""
        if call.timer is not None:
            call.timer.cancel()
        if call.future.done() and not call.future.cancelled():
            call.future.exception()  # read: a timeout set there while the call was connecting
        if call.passed_on:
            return  # its answer came and its slot went on; only its own wake-up was cancelled
        if not call.slot:
            with contextlib.suppress(ValueError):
                self._waiting.remove(call)
            return
        call.slot = False
        if call.connection is not None:  # its answer may still come: not the next call's
            call.connection.abort()
        self._release()

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _transport, connection = await loop.create_connection(
                lambda: _Connection(self._wanted, self._max_body, self._pass_on, self._answers),
                self.host, self.port,
                ssl=self._ssl, server_hostname=self.host if self._ssl is not None else None)
        except OSError as exc:  # refused, unreachable, no such name, TLS refused
            raise ConnectFailed(str(exc) or type(exc).__name__) from None
        return connection
