"""What tracing costs: product detail reads per second with tracing off and on.

Not a test (nothing asserts a speed); run it by hand::

    uv run python -m tests.load.tracing_cost                  # 3 rounds of 15 s per mode
    uv run python -m tests.load.tracing_cost --seconds 30 --rounds 5 --concurrency 32

It migrates and seeds one product database in a temporary folder, then, for
each round and mode, starts one product process (``python -m product_service
serve``) and sends ``GET /api/v1/products/{id}`` over ids 1..45 from
``--concurrency`` async clients for ``--seconds`` after a short warm-up. The
modes are:

- ``off``: no OTEL_* variable, MeshMart's default (nothing is installed);
- ``on``: ``OTEL_TRACES_SAMPLER=always_on``, OTLP/HTTP export to a receiver in
  this process that accepts and discards every batch (the SDK still encodes
  and sends each span);
- ``unsampled``: the same instrumentation with ``always_off``: what the
  instrumentation alone costs when no span is kept.

Modes alternate within each round, so a machine whose load changes during
the run spreads that over every mode; the table shows the median of the
rounds. The load generator shares the machine with the server, as on a
laptop: compare the modes with each other, not with a production figure.

Requests per second move with whatever else the machine runs. The CPU time
the product process spends per request (from /proc, user + system, the span
exporter's thread included) hardly does, so the table shows it too, and the
rate one fully used core would serve at that cost.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from meshmart_common.testing import free_port

PRODUCT_IDS = range(1, 46)  # the seeded catalogue
MODES = ("off", "on", "unsampled")


@dataclass
class Sink:
    """An OTLP/HTTP endpoint that answers 200 to every export and keeps only counts."""

    port: int = 0
    batches: int = 0
    bytes: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def otlp_sink() -> Iterator[Sink]:
    sink = Sink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            sink.batches += 1
            sink.bytes += len(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


def base_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        {
            "VAR_DIR": str(var_dir),
            "LOG_LEVEL": "WARNING",  # access log lines would measure the terminal
            "BUS_BACKEND": "local",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("DATABASE_URL", None)
    return env


def mode_env(mode: str, sink: Sink) -> dict[str, str]:
    if mode == "off":
        return {}
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "always_on" if mode == "on" else "always_off",
    }


def prepare(var_dir: Path) -> None:
    for command in ("migrate", "seed"):
        subprocess.run(
            [sys.executable, "-m", "product_service", command],
            env=base_env(var_dir),
            check=True,
            capture_output=True,
            timeout=300,
        )


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 and 15 of stat(5): utime and stime, in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def product_process(var_dir: Path, extra: dict[str, str]) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {**base_env(var_dir), "PORT": str(port), **extra}
    log = var_dir / f"product-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "product_service", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"product exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("product did not become ready")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Result:
    mode: str
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    cpu: float | None  # CPU seconds the product process spent in the window

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms_per_request(self) -> float | None:
        return self.cpu / self.requests * 1000 if self.cpu is not None and self.requests else None

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0


async def hammer(url: str, seconds: float, concurrency: int) -> tuple[int, int, list[float]]:
    """GET product details from ``concurrency`` clients for ``seconds``."""
    ids = itertools.cycle(PRODUCT_IDS)
    done = 0
    errors = 0
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
        stop = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done, errors
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    response = await client.get(f"/api/v1/products/{next(ids)}")
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                if ok:
                    done += 1
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, errors, latencies


def measure(
    var_dir: Path, mode: str, sink: Sink, seconds: float, warmup: float, concurrency: int
) -> Result:
    with product_process(var_dir, mode_env(mode, sink)) as (url, pid):
        asyncio.run(hammer(url, warmup, concurrency))
        cpu_before = cpu_seconds(pid)
        started = time.monotonic()
        done, errors, latencies = asyncio.run(hammer(url, seconds, concurrency))
        elapsed = time.monotonic() - started
        cpu_after = cpu_seconds(pid)
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return Result(mode, done, errors, elapsed, latencies, cpu)


def _median(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def _change(value: float | None, baseline: float | None) -> str:
    if value is None or not baseline:
        return ""
    return f"{(value / baseline - 1) * 100:+.1f}%"


def table(results: dict[str, list[Result]]) -> str:
    """Medians per mode: throughput, latency, CPU per request, and the change against off."""
    rows = {
        mode: (
            statistics.median(r.rate for r in runs),
            statistics.median(r.percentile(0.5) for r in runs),
            statistics.median(r.percentile(0.99) for r in runs),
            _median([r.cpu_ms_per_request for r in runs]),
        )
        for mode, runs in results.items()
        if runs
    }
    base_rate, _, _, base_cpu = rows.get("off", (None, None, None, None))
    lines = [
        "",
        f"{'mode':<10} {'req/s':>8} {'vs off':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'cpu ms/req':>10} {'vs off':>8} {'req/s per core':>15}",
    ]
    for mode, (rate, p50, p99, cpu) in rows.items():
        per_core = f"{1000 / cpu:.0f}" if cpu else ""
        cpu_text = f"{cpu:.2f}" if cpu is not None else ""
        lines.append(
            f"{mode:<10} {rate:>8.1f} {_change(rate, base_rate):>8} {p50:>7.1f} {p99:>7.1f} "
            f"{cpu_text:>10} {_change(cpu, base_cpu):>8} {per_core:>15}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args(argv)
    # Stopped from outside: still stop the product process (the finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    results: dict[str, list[Result]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory(prefix="tracing-cost-") as tmp, otlp_sink() as sink:
        var_dir = Path(tmp)
        prepare(var_dir)
        for round_number in range(1, args.rounds + 1):
            for mode in modes:
                result = measure(var_dir, mode, sink, args.seconds, args.warmup, args.concurrency)
                results[mode].append(result)
                cpu = result.cpu_ms_per_request
                print(
                    f"round {round_number} {mode:<10} {result.rate:8.1f} req/s  "
                    f"p50 {result.percentile(0.5):6.1f} ms  p99 {result.percentile(0.99):6.1f} ms  "
                    f"cpu {cpu if cpu is not None else float('nan'):5.2f} ms/req  "
                    f"errors {result.errors}",
                    flush=True,
                )
        print(f"\nOTLP batches received: {sink.batches} ({sink.bytes / 1e6:.1f} MB)")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
