"""The five services as separate processes that a test can kill, stop and start again.

Unlike the `make run` launcher (which stops everything when one process
exits), each process here is started on its own, on its own port and the
stack's shared var/ folder. A service may run more than one instance: an
instance is named ``product`` or ``product#2`` and gets its own port (the
instances of one service share its database and bus, as replicas do).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from meshmart_common.testing import free_port
from meshmart_devstack.launcher import StackConfig
from tests.shop import Shop
from tests.stack import FAST_HASHING, SERVICES, RunningStack, launcher_command


def service_of(instance: str) -> str:
    """The service an instance name belongs to (``product#2`` -> ``product``)."""
    return instance.split("#", 1)[0]


@dataclass
class Services:
    """Service instances, each of which can be killed, paused and started again."""

    config: StackConfig
    base: Path
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def port(self, instance: str) -> int:
        """The port of ``instance`` (a new free one for a new extra instance)."""
        if instance not in self.ports:
            self.ports[instance] = (
                self.config.ports[instance] if instance in self.config.ports else free_port()
            )
        return self.ports[instance]

    def url(self, instance: str) -> str:
        return f"http://{self.config.host}:{self.port(instance)}"

    def log(self, instance: str) -> Path:
        return self.base / f"{instance.replace('#', '-')}.log"

    def start(self, instance: str, **env: str) -> None:
        """Start ``instance`` on its port and the shared data folder, ``env`` on top."""
        service = service_of(instance)
        environment = {**self.config.env_for(service), "PORT": str(self.port(instance)), **env}
        with self.log(instance).open("ab") as sink:
            self.processes[instance] = subprocess.Popen(
                [sys.executable, "-m", f"{service}_service", "serve"],
                env=environment,
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )

    def wait_ready(self, *instances: str, within: float = 90.0) -> None:
        deadline = time.monotonic() + within
        pending = set(instances)
        while pending:
            for instance in sorted(pending):
                process = self.processes[instance]
                if process.poll() is not None:
                    pytest.fail(f"{instance} exited at start-up:\n{self.output(instance)}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.url(instance)}/readyz", timeout=2).status_code == 200:
                        pending.discard(instance)
            if pending and time.monotonic() > deadline:
                pending_logs = "\n".join(self.output(n) for n in sorted(pending))
                pytest.fail(f"not ready: {sorted(pending)}\n{pending_logs}")
            time.sleep(0.2)

    def kill(self, instance: str) -> None:
        """SIGKILL ``instance``: no shutdown code runs (no deregistration either)."""
        process = self.processes[instance]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self, instance: str) -> None:
        """Stop ``instance`` gracefully (SIGTERM), as an orchestrator would."""
        process = self.processes[instance]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def output(self, instance: str) -> str:
        return f"--- {instance} ---\n{self.log(instance).read_text(errors='replace')[-4000:]}"


@contextlib.contextmanager
def services(
    base: Path, extra_env: dict[str, str], *, instances: tuple[str, ...] = SERVICES
) -> Iterator[tuple[Services, Shop]]:
    """Migrate and seed with the launcher, then start each instance on its own.

    ``instances`` are the service instances to start (every service once by
    default); the Shop talks to the first instance of each service.
    """
    ports = {name: free_port() for name in SERVICES}
    var_dir = (base / "var").resolve()
    env = {**os.environ, **FAST_HASHING, **extra_env}
    seeded = subprocess.run(
        launcher_command("seed", ports, var_dir),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    config = StackConfig(
        host="127.0.0.1",
        ports=ports,
        var_dir=var_dir,
        extra_env={**FAST_HASHING, **extra_env},
    )
    running = Services(config, base)
    try:
        for instance in instances:
            running.start(instance)
        running.wait_ready(*instances)
        stack = RunningStack(
            process=running.processes["user"],
            urls={name: config.url(name) for name in SERVICES},
            ports=ports,
            var_dir=var_dir,
            log=running.log("user"),
        )
        with httpx.Client(timeout=30) as http:
            login = http.post(
                f"{config.url('user')}/api/v1/auth/login",
                json={"email": "admin@meshmart.local", "password": "meshmart-admin"},
            )
            assert login.status_code == 200, login.text
            admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
            yield running, Shop(stack, http, admin)
    finally:
        running.stop_all()
