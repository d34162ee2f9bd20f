"""The open-model generator: on schedule whatever the server does, and its HTTP client.

No assertion here depends on how fast this machine is: the servers below
hold their answers until enough requests arrived, which only an open-model
generator can make happen.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest

from meshmart_common.testing import free_port
from meshmart_devstack.bench.api import BenchApi
from meshmart_devstack.bench.arrivals import OK, measure_get, run_step
from meshmart_devstack.bench.http11 import (
    ConnectionPool,
    ProtocolError,
    ResponseParser,
    encode_request,
)
from meshmart_devstack.bench.trivial_server import RESPONSE, TrivialHttp


class HoldingServer:
    """Answers nothing until ``release_after`` requests have arrived, then everything."""

    def __init__(self, release_after: int) -> None:
        self.release_after = release_after
        self.received = 0
        self.connections = 0
        self.released = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.received += 1
                if self.received >= self.release_after:
                    self.released.set()
                await self.released.wait()
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


@pytest.fixture
async def holding() -> AsyncIterator[tuple[HoldingServer, str]]:
    server = HoldingServer(release_after=40)
    url = await server.start()
    yield server, url
    assert server.server is not None
    server.server.close()


async def test_requests_go_out_on_schedule_while_earlier_ones_wait_for_answers(
    holding: tuple[HoldingServer, str],
) -> None:
    # 40 requests over 0.2 s; the server answers none until all 40 are in. A
    # closed-loop client would wait for answers before sending more and stall.
    server, url = holding
    step = await measure_get(url, ["/a", "/b"], rate=200, duration=0.2, answer_within=30)
    assert server.received == 40
    assert step.scheduled == 40
    assert step.ok == 40
    assert step.errors == {}
    assert server.connections >= 40  # each waiting request held a connection of its own


async def test_latency_counts_from_the_scheduled_time_so_early_requests_waited_longest(
    holding: tuple[HoldingServer, str],
) -> None:
    _server, url = holding
    pool = ConnectionPool(url, max_connections=64)

    async def job(index: int) -> tuple[str, int]:
        response = await pool.request("GET", f"/{index}")
        return OK, response.status

    try:
        records = await run_step(job, rate=100, duration=0.4, answer_within=30)
    finally:
        pool.close()
    latencies = [lat for lat in records.latencies if lat is not None]
    assert len(latencies) == 40
    # All answers left together, so the first request (scheduled 0.39 s before
    # the last) waited 0.39 s longer.
    assert latencies[0] - latencies[-1] == pytest.approx(0.39, abs=0.05)
    assert records.kept == [200] * 40


async def test_a_full_pool_queues_requests_and_counts_the_wait_as_latency(
    holding: tuple[HoldingServer, str],
) -> None:
    server, url = holding
    server.release_after = 2  # all the connections the pool may open
    pool = ConnectionPool(url, max_connections=2)

    async def job(index: int) -> tuple[str, None]:
        await pool.request("GET", "/")
        return OK, None

    try:
        records = await run_step(job, rate=50, duration=0.2, answer_within=30)
    finally:
        pool.close()
    assert records.outcomes == [OK] * 10
    assert pool.opened == 2


async def test_unanswered_requests_become_timeouts_when_the_step_ends() -> None:
    server = HoldingServer(release_after=10_000)
    url = await server.start()
    try:
        step = await measure_get(url, ["/"], rate=100, duration=0.1, answer_within=0.2)
    finally:
        assert server.server is not None
        server.server.close()
    assert step.ok == 0
    assert step.errors == {"timeout": 10}


async def test_a_refused_connection_is_an_error_not_a_crash() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    pool = ConnectionPool(url)
    with pytest.raises(ConnectionRefusedError):
        await pool.warm(1)
    step = await measure_get(url, ["/"], rate=50, duration=0.1, answer_within=1)
    assert step.ok == 0
    assert sum(step.errors.values()) == 5
    assert all(kind.startswith("connection error") for kind in step.errors)


def test_the_parser_reads_content_length_bodies_split_across_packets() -> None:
    parser = ResponseParser()
    raw = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-Request-ID: abc\r\n\r\nhello"
    assert parser.feed(raw[:10]) is None
    assert parser.feed(raw[10:-2]) is None
    response = parser.feed(raw[-2:])
    assert response is not None
    assert response.status == 201
    assert response.headers["x-request-id"] == "abc"
    assert response.body == b"hello"
    assert not parser.pending


def test_the_parser_reads_chunked_bodies_and_keeps_the_next_response() -> None:
    parser = ResponseParser()
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"a"\r\n3;ext=1\r\n:1}\r\n0\r\n\r\n'
    )
    response = parser.feed(chunked + b"HTTP/1.1 204 No Content\r\n\r\n")
    assert response is not None
    assert response.json() == {"a": 1}
    assert parser.pending
    second = parser.feed(b"")
    assert second is not None
    assert second.status == 204
    assert second.body == b""


def test_the_parser_refuses_what_is_not_http() -> None:
    with pytest.raises(ProtocolError):
        ResponseParser().feed(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_requests_are_encoded_with_host_length_and_headers() -> None:
    raw = encode_request(
        "POST", "localhost:8003", "/api/v1/orders", {"Authorization": "Bearer t"}, b"{}"
    )
    assert raw == (
        b"POST /api/v1/orders HTTP/1.1\r\nHost: localhost:8003\r\n"
        b"Authorization: Bearer t\r\nContent-Length: 2\r\n\r\n{}"
    )
    assert b"Content-Length" not in encode_request("GET", "h", "/")


async def test_the_pool_reuses_keep_alive_connections() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(TrivialHttp, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = ConnectionPool(f"http://127.0.0.1:{port}/prefix")
    try:
        for _ in range(20):
            response = await pool.request("GET", "/x")
            assert response.json() == {"ok": True}
        assert pool.opened == 1
    finally:
        pool.close()
        server.close()


@pytest.fixture
def trivial_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "meshmart_devstack.bench", "trivial-server", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_smoke_the_generator_process_drives_a_server_for_a_few_seconds_without_errors(
    trivial_server: str,
) -> None:
    # What `make bench` runs for every step: a generator process fed a JSON spec.
    import httpx

    for _ in range(100):
        try:
            httpx.get(trivial_server, timeout=1)
            break
        except httpx.HTTPError:
            import time

            time.sleep(0.1)
    spec = {
        "kind": "get",
        "base_url": trivial_server,
        "paths": ["/a", "/b?c=d"],
        "rate": 200,
        "duration": 3,
        "timeout": 30,
    }
    done = subprocess.run(
        [sys.executable, "-m", "meshmart_devstack.bench", "generate"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    step = json.loads(done.stdout)["step"]
    assert step["scheduled"] == 600
    assert step["ok"] == 600
    assert step["errors"] == {}
    assert step["generator_cpu_s"] > 0


async def test_setup_calls_retry_a_server_error_and_record_it() -> None:
    answers = [b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom"]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(answers.pop(0) if answers else RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    api = BenchApi({"user": f"http://127.0.0.1:{port}"})
    try:
        response = await api.call("user", "GET", "/users/me")
    finally:
        api.close()
        server.close()
    assert response.status == 200
    assert api.server_errors == ["GET user /users/me: HTTP 500 boom"]
