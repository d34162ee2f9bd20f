"""The compose gateway's nginx configuration, run by Debian's nginx in the tests.

The container has the files at /etc/nginx (its nginx prefix): nginx.conf, and
the folder meshmart/ with upstreams.conf, gateway.conf and html/. Here they
are laid out the same way in a temporary prefix, byte for byte, except:

- meshmart/upstreams.conf: each compose name (``product:8000``) becomes the
  address of a local process (``127.0.0.1:<port>``);
- meshmart/gateway.conf: ``listen 8080`` becomes ``listen 127.0.0.1:<free port>``;
- nginx.conf: the pid file and temporary folders move from /tmp to the prefix;
- mime.types comes from Debian's nginx instead of the image's.

Each substitution must match exactly where expected, so a change to the
gateway's files that the tests no longer cover fails loudly here.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.compose_file import ROOT, SERVICES

GATEWAY_DIR = ROOT / "deploy" / "compose" / "gateway"
CONTAINER_PORT = 8080
CONTAINER_TMP = "/tmp/"  # noqa: S108 - the container's tmpfs; moved into the test's prefix
NGINX_HINT = "nginx is missing: `apt-get install nginx` (Debian/Ubuntu; .ci/run installs it)"


def nginx_binary() -> str:
    """Debian's nginx; the test fails (never skips) without it."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        pytest.fail(NGINX_HINT, pytrace=False)
    return found


def _substitute(text: str, old: str, new: str, *, count: int | None = 1, where: str) -> str:
    found = text.count(old)
    assert found >= 1 if count is None else found == count, (
        f"{where}: expected {'some' if count is None else count} x {old!r}, found {found}"
    )
    return text.replace(old, new)


def render(prefix: Path, port: int, upstreams: Mapping[str, str]) -> Path:
    """Lay out the gateway in ``prefix`` (see the module docstring); nginx.conf's path."""
    assert set(upstreams) == set(SERVICES)
    shutil.copytree(GATEWAY_DIR / "meshmart", prefix / "meshmart")
    (prefix / "tmp").mkdir()
    shutil.copyfile(Path("/etc/nginx/mime.types"), prefix / "mime.types")

    main = (GATEWAY_DIR / "nginx.conf").read_text()
    main = _substitute(main, CONTAINER_TMP, f"{prefix / 'tmp'}/", count=None, where="nginx.conf")
    (prefix / "nginx.conf").write_text(main)

    gateway = (GATEWAY_DIR / "meshmart" / "gateway.conf").read_text()
    gateway = _substitute(
        gateway,
        f"listen {CONTAINER_PORT};",
        f"listen 127.0.0.1:{port};",
        where="gateway.conf",
    )
    (prefix / "meshmart" / "gateway.conf").write_text(gateway)

    addresses = (GATEWAY_DIR / "meshmart" / "upstreams.conf").read_text()
    for service, address in upstreams.items():
        addresses = _substitute(
            addresses, f" {service}:8000;", f" {address};", where="upstreams.conf"
        )
    (prefix / "meshmart" / "upstreams.conf").write_text(addresses)
    return prefix / "nginx.conf"


def check(config: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on a rendered configuration."""
    return subprocess.run(
        [nginx_binary(), "-t", "-p", f"{config.parent}/", "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class Gateway:
    """A running nginx with the gateway's configuration."""

    prefix: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    def log_entries(self) -> list[dict[str, Any]]:
        """The JSON access log lines written so far."""
        lines = self.access_log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def entry(self, request_id: str, within: float = 5.0) -> dict[str, Any]:
        """The access log line of ``request_id`` (nginx writes it after the response)."""
        deadline = time.monotonic() + within
        while True:
            for entry in self.log_entries():
                if entry["request_id"] == request_id:
                    return entry
            if time.monotonic() > deadline:
                pytest.fail(f"no access log line for {request_id}:\n{self.access_log.read_text()}")
            time.sleep(0.05)


@contextlib.contextmanager
def running_gateway(port: int, upstreams: Mapping[str, str]) -> Iterator[Gateway]:
    """nginx in the foreground (``daemon off``) with the rendered gateway until the block
    ends. The prefix is world-traversable: run as root, nginx's workers are `nobody`."""
    prefix = Path(tempfile.mkdtemp(prefix="meshmart-gateway-"))
    prefix.chmod(0o755)
    try:
        config = render(prefix, port, upstreams)
        checked = check(config)
        assert checked.returncode == 0, checked.stderr
        with (prefix / "access.log").open("wb") as out, (prefix / "error.log").open("wb") as err:
            process = subprocess.Popen(
                [
                    nginx_binary(),
                    "-p",
                    f"{prefix}/",
                    "-c",
                    str(config),
                    "-e",
                    "stderr",
                    "-g",
                    "daemon off;",
                ],
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        gateway = Gateway(prefix, port, process)
        try:
            _wait_ready(gateway)
            yield gateway
        finally:
            process.send_signal(signal.SIGQUIT)  # graceful: finish requests, flush logs
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def _wait_ready(gateway: Gateway, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            pytest.fail(f"nginx exited at start-up:\n{gateway.error_log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{gateway.url}/gateway/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"nginx did not answer within {within} s:\n{gateway.error_log.read_text()}")
