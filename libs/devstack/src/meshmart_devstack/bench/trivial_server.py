"""A trivial HTTP/1.1 server: the fastest thing on this machine to point the generator at.

Every GET (a request head without a body) gets the same small 200 answer at
once. Measuring the generator against it tells the generator's own ceiling:
the rate above which the numbers say more about the generator than about the
server under test.
"""

from __future__ import annotations

import asyncio
import signal
from typing import cast

RESPONSE = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
)


class TrivialHttp(asyncio.Protocol):
    """Answers each complete request head with :data:`RESPONSE` (keep-alive)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        complete = self.buffer.count(b"\r\n\r\n")
        if complete and self.transport is not None:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * complete)


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(TrivialHttp, host, port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()
