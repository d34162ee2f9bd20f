"""Launch the real MeshMart processes with the `make run` launcher (for e2e and fuzz tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshmart_common.testing import free_port

SERVICES = ("user", "product", "order", "trade", "data")
READY_LINE = "MeshMart is up"
# Cheap password hashing keeps the stack fast under tests; production uses the defaults.
FAST_HASHING = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST": "8192"}


@dataclass
class RunningStack:
    """A launcher process and the URLs of its services."""

    process: subprocess.Popen[str]
    urls: dict[str, str]
    ports: dict[str, int]
    var_dir: Path
    log: Path

    def output(self) -> str:
        """Everything the launcher and its services printed so far."""
        return self.log.read_text(errors="replace")


def launcher_command(command: str, ports: dict[str, int], var_dir: Path) -> list[str]:
    """The command line of `python -m meshmart_devstack COMMAND` on these ports."""
    args = [sys.executable, "-m", "meshmart_devstack", command, "--var-dir", str(var_dir)]
    for name, port in ports.items():
        args += ["--port", f"{name}={port}"]
    return args


@contextmanager
def launch_stack(
    base: Path, timeout: float = 180, extra_env: dict[str, str] | None = None
) -> Iterator[RunningStack]:
    """Run the launcher on free ports until the block ends (then Ctrl-C it)."""
    ports = {name: free_port() for name in SERVICES}
    log = base / "launcher.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            launcher_command("run", ports, base / "var"),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **FAST_HASHING, **(extra_env or {})},
        )
    stack = RunningStack(
        process=process,
        urls={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
        ports=ports,
        var_dir=base / "var",
        log=log,
    )
    deadline = time.monotonic() + timeout
    while READY_LINE not in stack.output():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the launcher did not come up:\n{stack.output()[-5000:]}")
        time.sleep(0.3)
    try:
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
