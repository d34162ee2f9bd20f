"""A lean HTTP/1.1 client for the load generator: keep-alive connections, no frills.

httpx spends most of a request in Python bookkeeping (about 0.3 ms of CPU per
request here), so on a 2-core machine it would saturate before the server
does. This client writes a pre-encoded request and parses only what it needs
from the response (status, Content-Length or chunked body), on an
``asyncio.Protocol`` (uvloop when installed). One request at a time per
connection; no pipelining, no TLS, no redirects.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit


class ProtocolError(Exception):
    """The server sent something this client cannot read, or closed mid-response."""


@dataclass(frozen=True, slots=True)
class Response:
    """Status, lower-cased headers and body of one response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def encode_request(
    method: str,
    host: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive is HTTP/1.1's default)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


class ResponseParser:
    """Incremental parser of HTTP/1.1 responses (Content-Length, chunked, or no body)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._head: tuple[int, dict[str, str]] | None = None
        self._length: int | None = None  # body bytes expected; None: chunked
        self._chunks = bytearray()
        self.head_request = False

    def feed(self, data: bytes) -> Response | None:
        """Add ``data``; return the response once it is complete (extra bytes stay buffered)."""
        self._buffer += data
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > 65536:
                    raise ProtocolError("response head larger than 64 KiB")
                return None
            self._head = self._parse_head(bytes(self._buffer[:end]))
            del self._buffer[: end + 4]
        status, headers = self._head
        if self._length is not None or "chunked" not in headers.get("transfer-encoding", ""):
            if self._length is None:
                no_body = self.head_request or status in (204, 304) or 100 <= status < 200
                self._length = 0 if no_body else int(headers.get("content-length", "0"))
            if len(self._buffer) < self._length:
                return None
            body = bytes(self._buffer[: self._length])
            del self._buffer[: self._length]
            return self._done(status, headers, body)
        return self._feed_chunked(status, headers)

    def _feed_chunked(self, status: int, headers: dict[str, str]) -> Response | None:
        while True:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return None
            size = int(bytes(self._buffer[:line_end]).split(b";", 1)[0], 16)
            if size == 0:
                # The last chunk, optional trailers, and the final blank line.
                trailer_end = self._buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return None
                del self._buffer[: trailer_end + 4]
                body = bytes(self._chunks)
                self._chunks = bytearray()
                return self._done(status, headers, body)
            if len(self._buffer) < line_end + 2 + size + 2:
                return None
            start = line_end + 2
            self._chunks += self._buffer[start : start + size]
            del self._buffer[: start + size + 2]

    def _done(self, status: int, headers: dict[str, str], body: bytes) -> Response:
        self._head = None
        self._length = None
        return Response(status, headers, body)

    @staticmethod
    def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {lines[0]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    @property
    def pending(self) -> bool:
        """Bytes of a next response already arrived (a server must not send them unasked)."""
        return bool(self._buffer) or self._head is not None


IDLE_REUSE_SECONDS = 2.0
"""An idle connection older than this is closed rather than reused: servers close idle
keep-alive connections (uvicorn after 5 s), and a request sent as they do is lost."""


class Connection(asyncio.Protocol):
    """One keep-alive TCP connection that carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.served = 0
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            response = self.parser.feed(data)
        except (ProtocolError, ValueError) as exc:
            self._fail(ProtocolError(str(exc)))
            return
        if response is not None:
            self.served += 1
            if response.headers.get("connection", "").lower() == "close":
                self.close()
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ProtocolError(f"connection closed: {exc}" if exc else "connection closed"))

    def _fail(self, exc: Exception) -> None:
        self.close()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, raw: bytes, *, head: bool = False) -> asyncio.Future[Response]:
        """Write one encoded request; the future gets its response."""
        if self.closed or self.transport is None:
            raise ProtocolError("connection closed")
        assert self.waiter is None, "one request at a time"
        self.parser.head_request = head
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Up to ``max_connections`` keep-alive connections to one host, opened on demand.

    A request that finds every connection busy waits for one; that wait is
    part of what the load generator measures, as it would be for a browser.
    """

    def __init__(self, base_url: str, *, max_connections: int = 256) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// URLs are supported, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc
        self.prefix = parts.path.rstrip("/")
        self.max_connections = max_connections
        self.opened = 0
        self._idle: deque[Connection] = deque()
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._all: set[Connection] = set()

    async def _acquire(self) -> Connection:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_REUSE_SECONDS:
                return connection
            connection.close()
            self._all.discard(connection)
        if len(self._all) >= self.max_connections:
            waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            handed = await waiter
            if handed is not None:
                return handed
            # A connection closed: its slot is ours, open a new one.
        return await self._open()

    async def _open(self) -> Connection:
        placeholder = Connection()
        placeholder.closed = True
        self._all.add(placeholder)  # hold the slot while connecting
        try:
            _transport, connection = await asyncio.get_running_loop().create_connection(
                Connection, self.host, self.port
            )
        except BaseException:
            self._all.discard(placeholder)
            self._wake_one(None)
            raise
        finally:
            self._all.discard(placeholder)
        self._all.add(connection)
        self.opened += 1
        return connection

    async def warm(self, count: int) -> None:
        """Open ``count`` idle connections now, so that a step does not start with a burst of
        connects (wrk2 also connects before it starts the clock)."""
        wanted = min(count, self.max_connections) - len(self._all)
        if wanted > 0:
            opened = await asyncio.gather(*(self._open() for _ in range(wanted)))
            self._idle.extend(opened)

    def _wake_one(self, connection: Connection | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False

    def _release(self, connection: Connection) -> None:
        if connection.closed or connection.parser.pending:
            connection.close()
            self._all.discard(connection)
            self._wake_one(None)
            return
        if not self._wake_one(connection):
            connection.idle_since = time.monotonic()
            self._idle.append(connection)

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        raw: bytes | None = None,
    ) -> Response:
        """Send one request (``raw``: already encoded) and read its response."""
        if raw is None:
            raw = encode_request(method, self.host_header, self.prefix + path, headers, body)
        for attempt in (1, 2):
            connection = await self._acquire()
            reused = connection.served > 0
            try:
                return await connection.send(raw, head=method == "HEAD")
            except ProtocolError:
                connection.close()
                # The server closed a reused keep-alive connection before reading this
                # request (nothing came back): the request never reached it; send it again.
                if attempt == 2 or not reused or connection.parser.pending:
                    raise
            except BaseException:
                connection.close()
                raise
            finally:
                self._release(connection)
        raise AssertionError("unreachable")

    async def request_json(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send ``payload`` as a JSON body (none when None)."""
        all_headers = dict(headers or {})
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            all_headers["Content-Type"] = "application/json"
        return await self.request(method, path, headers=all_headers, body=body)

    def encode(self, method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
        """Pre-encode a request for :meth:`request` (``raw=``)."""
        return encode_request(method, self.host_header, self.prefix + path, headers)

    def close(self) -> None:
        """Close every connection; requests in flight fail."""
        for connection in list(self._all):
            connection.close()
        self._all.clear()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.cancel()
