"""The launcher behind `make run`.

Steps: apply every service's migrations (in parallel), seed demo data (user
and product; idempotent), start the five services as separate uvicorn
processes, wait until every /readyz answers 200, print where they are, and on
Ctrl-C (SIGINT) or SIGTERM stop them all.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from meshmart_common.tracing import TracingConfig

SERVICES: dict[str, int] = {
    "user": 8001,
    "product": 8002,
    "order": 8003,
    "trade": 8004,
    "data": 8005,
}
SEEDED = ("user", "product", "trade")
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class StackConfig:
    """Where the stack runs: host, one port per service, the var/ folder."""

    host: str
    ports: dict[str, int]
    var_dir: Path
    extra_env: dict[str, str]

    def url(self, service: str) -> str:
        """Base URL of ``service``."""
        return f"http://{self.host}:{self.ports[service]}"

    def env_for(self, service: str) -> dict[str, str]:
        """The process environment of ``service``."""
        env = dict(os.environ)
        env.update(
            {
                "HOST": self.host,
                "PORT": str(self.ports[service]),
                "VAR_DIR": str(self.var_dir),
                "JWKS_URL": f"{self.url('user')}/.well-known/jwks.json",
                "PYTHONUNBUFFERED": "1",
            }
        )
        # Where each service finds the others (USER_URL, PRODUCT_URL, ...).
        env.update({f"{name.upper()}_URL": self.url(name) for name in self.ports})
        # Each process reads its own DATABASE_URL; a shared one would mix services.
        env.pop("DATABASE_URL", None)
        env.update(self.extra_env)
        # Tracing (OTEL_* passes through): a shared OTEL_SERVICE_NAME would
        # give all five processes one name in Jaeger.
        env["OTEL_SERVICE_NAME"] = service
        return env

    def tracing(self) -> TracingConfig:
        """What the OTEL_* variables the services get ask for (ValueError if unusable)."""
        return TracingConfig.from_environ({**os.environ, **self.extra_env})


def _service_command(service: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"{service}_service", *args]


def _pump(prefix: str, stream: IO[bytes], sink: IO[str]) -> None:
    for raw in iter(stream.readline, b""):
        sink.write(f"{prefix} | {raw.decode(errors='replace').rstrip()}\n")
        sink.flush()


def _run_parallel(config: StackConfig, services: Sequence[str], *args: str) -> dict[str, str]:
    """Run one CLI command per service concurrently; raise with the output if any fails."""
    procs = {
        name: subprocess.Popen(
            _service_command(name, *args),
            env=config.env_for(name),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name in services
    }
    outputs: dict[str, str] = {}
    failed: list[str] = []
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        outputs[name] = out.decode(errors="replace")
        if proc.returncode != 0:
            failed.append(name)
    if failed:
        details = "\n".join(f"--- {n} ---\n{outputs[n][-3000:]}" for n in failed)
        raise RuntimeError(f"`{' '.join(args)}` failed for {', '.join(failed)}:\n{details}")
    return outputs


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class Stack:
    """The running service processes."""

    def __init__(self, config: StackConfig, out: IO[str]) -> None:
        self.config = config
        self.out = out
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._pumps: list[threading.Thread] = []

    def migrate(self) -> None:
        """Apply every service's migrations."""
        for output in _run_parallel(self.config, list(self.config.ports), "migrate").values():
            self.out.write(output)

    def seed(self) -> list[str]:
        """Seed demo data; return what the seeders printed."""
        outputs = _run_parallel(self.config, [s for s in SEEDED if s in self.config.ports], "seed")
        lines = [line for output in outputs.values() for line in output.splitlines() if line]
        for line in lines:
            self.out.write(line + "\n")
        return lines

    def start(self) -> None:
        """Start every service process."""
        busy = [
            f"{n}:{p}" for n, p in self.config.ports.items() if _port_in_use(self.config.host, p)
        ]
        if busy:
            raise RuntimeError(f"ports already in use: {', '.join(busy)} (is MeshMart running?)")
        width = max(len(n) for n in self.config.ports)
        for name in self.config.ports:
            proc = subprocess.Popen(
                _service_command(name, "serve"),
                env=self.config.env_for(name),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # Own session: Ctrl-C reaches only the launcher, which stops them in order.
                start_new_session=True,
            )
            self.processes[name] = proc
            assert proc.stdout is not None
            pump = threading.Thread(
                target=_pump, args=(name.ljust(width), proc.stdout, self.out), daemon=True
            )
            pump.start()
            self._pumps.append(pump)

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Block until every /readyz answers 200; raise if a process dies or time runs out."""
        pending = set(self.processes)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for name in sorted(pending):
                    proc = self.processes[name]
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with code {proc.returncode} at start-up")
                    try:
                        if client.get(f"{self.config.url(name)}/readyz").status_code == 200:
                            pending.discard(name)
                    except httpx.HTTPError:
                        pass
                if pending:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"not ready after {timeout:.0f} s: {', '.join(sorted(pending))}"
                        )
                    time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM every process, then SIGKILL what is still running after a grace period."""
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for proc in self.processes.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pump in self._pumps:
            pump.join(timeout=2)

    def any_exited(self) -> str | None:
        """The name of a service process that has exited, if any."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                return name
        return None


def _parse_ports(values: Sequence[str]) -> dict[str, int]:
    ports = dict(SERVICES)
    for value in values:
        name, _, port = value.partition("=")
        if name not in SERVICES or not port.isdigit():
            raise SystemExit(f"--port takes SERVICE=PORT with SERVICE one of {', '.join(SERVICES)}")
        ports[name] = int(port)
    return ports


def _default_var_dir() -> Path:
    here = Path.cwd().resolve()
    for parent in [here, *here.parents]:
        if (parent / "pyproject.toml").exists() and (parent / "libs").is_dir():
            return parent / "var"
    return Path.cwd() / "var"


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="meshmart_devstack", description=__doc__)
    parser.add_argument("command", choices=["run", "migrate", "seed"])
    parser.add_argument("--host", default=os.environ.get("MESHMART_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="SERVICE=PORT",
        help="override a service's port (repeatable)",
    )
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=None,
        help="where SQLite files and dev keys live (default: ./var)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every service (repeatable)",
    )
    return parser


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None) -> int:
    """Entry point of `make run` / `make migrate` / `make seed`."""
    args = build_parser().parse_args(argv)
    sink = out or sys.stdout
    extra = dict(item.split("=", 1) for item in args.env if "=" in item)
    var_dir = (args.var_dir or _default_var_dir()).resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    config = StackConfig(
        host=args.host, ports=_parse_ports(args.port), var_dir=var_dir, extra_env=extra
    )
    try:
        tracing = config.tracing()
    except ValueError as exc:
        sink.write(f"error: {exc}\n")
        return 2
    stack = Stack(config, sink)
    started = time.monotonic()
    try:
        stack.migrate()
        if args.command == "migrate":
            return 0
        seeded = stack.seed()
        if args.command == "seed":
            return 0
    except RuntimeError as exc:
        sink.write(f"error: {exc}\n")
        return 1

    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        stack.wait_ready()
    except RuntimeError as exc:
        sink.write(f"error: {exc}\n")
        stack.stop()
        return 1

    elapsed = time.monotonic() - started
    lines = [f"\nMeshMart is up in {elapsed:.1f} s (data in {var_dir}):"]
    for name in config.ports:
        lines.append(f"  {name:<8} {config.url(name):<24} docs: {config.url(name)}/docs")
    lines += [f"  {line}" for line in seeded if "admin" in line.lower()]
    hint = "" if tracing.enabled else ' (README: "Seeing a request travel")'
    lines.append(f"  tracing: {tracing.describe()}{hint}")
    lines.append("Press Ctrl-C to stop.\n")
    sink.write("\n".join(lines) + "\n")
    sink.flush()

    exit_code = 0
    while not stopping.wait(0.5):
        dead = stack.any_exited()
        if dead:
            sink.write(f"error: {dead} stopped unexpectedly; stopping the others\n")
            exit_code = 1
            break
    sink.write("stopping MeshMart...\n")
    stack.stop()
    sink.write("stopped.\n")
    return exit_code
