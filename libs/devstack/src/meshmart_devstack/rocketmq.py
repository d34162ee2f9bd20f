"""A real Apache RocketMQ 5 on this machine, for development and tests.

`python -m meshmart_devstack.rocketmq run` (what `make rocketmq` runs) gets
the RocketMQ jars from Maven Central once, starts a name server and a gRPC
proxy in *local* mode (the proxy embeds the broker) with a small heap,
creates MeshMart's topics and consumer groups, checks that the proxy routes
every topic, prints the endpoints, and stops both on Ctrl-C.

Commands (all take ``--base-dir``, default ``var/rocketmq``):

- ``run``       start in the foreground, stop on Ctrl-C / SIGTERM
- ``start``     start in the background (state in ``<base-dir>/state.json``)
- ``stop``      stop what ``start`` started
- ``status``    pids, ports, memory, and whether the proxy answers
- ``download``  only fetch the jars into the cache
- ``create-topic NAME [--type DELAY]`` / ``create-group NAME``  on a running server

Files: the jars in ``var/cache/rocketmq/<version>/lib`` (``$MESHMART_ROCKETMQ_CACHE``
moves it; Maven keeps its own copy in ``~/.m2``), configs, store and logs in the
base dir. Java 17 and Maven are needed: ``apt-get install openjdk-17-jre-headless maven``.

Topics and consumer groups are created by ``deploy/rocketmq/create-topics.sh``,
the script docker compose's one-shot ``rocketmq-init`` container runs too; here
it gets the admin tool's JVM command line (``MQAdminStartup``) as its mqadmin.
The admin tool exits 0 even when a command failed, so the script (and
:func:`check_admin_output`, for :meth:`RocketMQServer.admin`) reads its output,
and every topic is then looked up through the proxy (``QueryRoute`` over gRPC)
with its message type.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Literal

ROCKETMQ_VERSION = "5.3.3"
CLUSTER_NAME = "DefaultCluster"
BROKER_NAME = "meshmart-broker"
MAVEN_ARTIFACTS = ("rocketmq-namesrv", "rocketmq-proxy", "rocketmq-tools")
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
INSTALL_HINT = (
    "RocketMQ needs a Java 17 runtime and Maven (to fetch its jars from Maven Central): "
    "`apt-get install openjdk-17-jre-headless maven` (Debian/Ubuntu)"
)
STATE_FILE = "state.json"
MARKER_PROPERTY = "meshmart.devstack.rocketmq"  # -D property that tags our JVMs

MessageType = Literal["NORMAL", "DELAY", "FIFO", "TRANSACTION"]
MESSAGE_TYPES: tuple[MessageType, ...] = ("NORMAL", "DELAY", "FIFO", "TRANSACTION")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create: its name, RocketMQ 5 message type and queue count."""

    name: str
    message_type: MessageType = "NORMAL"
    queues: int = 4


class RocketMQError(RuntimeError):
    """RocketMQ could not be set up, started or configured; the message says why."""


class RocketMQSetupError(RocketMQError):
    """A tool (java, mvn) is missing or the jars could not be fetched."""


class AdminCommandError(RocketMQError):
    """An admin tool command failed (its exit code is 0 anyway; the output tells)."""

    def __init__(self, command: str, output: str, reason: str) -> None:
        tail = "\n".join(output.strip().splitlines()[-15:])
        super().__init__(f"mqadmin {command} failed: {reason}\n{tail}")
        self.command = command
        self.output = output
        self.reason = reason


def init_script() -> Path:
    """``deploy/rocketmq/create-topics.sh`` of this checkout: the topic and group set-up
    that docker compose's ``rocketmq-init`` container runs as well."""
    script = Path(__file__).resolve().parents[4] / "deploy" / "rocketmq" / "create-topics.sh"
    if not script.is_file():
        raise RocketMQSetupError(f"the RocketMQ set-up script {script} is missing")
    return script


def topology_text(topics: Iterable[TopicSpec], groups: Iterable[str]) -> str:
    """The topology file ``create-topics.sh`` reads: ``topic NAME TYPE QUEUES`` and
    ``group NAME`` lines (deploy/rocketmq/topology.txt holds MeshMart's)."""
    lines = [f"topic {t.name} {t.message_type} {t.queues}" for t in topics]
    lines += [f"group {name}" for name in dict.fromkeys(groups)]
    return "".join(line + "\n" for line in lines)


def meshmart_topology() -> tuple[tuple[TopicSpec, ...], tuple[str, ...]]:
    """MeshMart's topics and consumer groups, as meshmart_common.messaging.topology
    declares them (the one place they are listed)."""
    from meshmart_common.messaging.topology import CONSUMER_GROUPS, TOPICS

    topics = tuple(TopicSpec(t.name, t.kind.value) for t in TOPICS)
    groups = tuple(dict.fromkeys(g.name for g in CONSUMER_GROUPS))
    return topics, groups


# --------------------------------------------------------------------------- tools and jars


def _default_var_dir() -> Path:
    here = Path.cwd().resolve()
    for parent in [here, *here.parents]:
        if (parent / "pyproject.toml").exists() and (parent / "libs").is_dir():
            return parent / "var"
    return Path.cwd() / "var"


def default_cache_dir() -> Path:
    """Where the jars are kept: $MESHMART_ROCKETMQ_CACHE or <repo>/var/cache/rocketmq."""
    env = os.environ.get("MESHMART_ROCKETMQ_CACHE")
    return Path(env) if env else _default_var_dir() / "cache" / "rocketmq"


def default_base_dir() -> Path:
    """Where `run`/`start` keep configs, store, logs and state: <repo>/var/rocketmq."""
    return _default_var_dir() / "rocketmq"


def require_tool(name: str) -> str:
    """The path of ``name`` on PATH; RocketMQSetupError naming what to install if missing."""
    if name == "java" and os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    path = shutil.which(name)
    if path is None:
        raise RocketMQSetupError(f"`{name}` not found on PATH. {INSTALL_HINT}")
    return path


def _pom(version: str) -> str:
    deps = "\n".join(
        "    <dependency><groupId>org.apache.rocketmq</groupId>"
        f"<artifactId>{artifact}</artifactId><version>{version}</version></dependency>"
        for artifact in MAVEN_ARTIFACTS
    )
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>meshmart.devstack</groupId>
  <artifactId>rocketmq-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
</project>
"""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_jars(
    version: str = ROCKETMQ_VERSION,
    cache_dir: Path | None = None,
    *,
    out: IO[str] | None = None,
    timeout: float = 900.0,
) -> Path:
    """The folder holding RocketMQ ``version``'s jars, downloading them with Maven the
    first time (a lock keeps concurrent callers from downloading twice)."""
    cache = (cache_dir or default_cache_dir()) / version
    lib = cache / "lib"
    done = cache / ".complete"
    if done.exists():
        return lib
    with _file_lock(cache / ".lock"):
        if done.exists():
            return lib
        mvn = require_tool("mvn")
        require_tool("java")
        if out is not None:
            out.write(f"Fetching RocketMQ {version} jars from Maven Central into {lib} ...\n")
            out.flush()
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="download-", dir=cache))
        try:
            (work / "pom.xml").write_text(_pom(version))
            result = subprocess.run(  # noqa: S603 - fixed arguments
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(work / "pom.xml"),
                    f"{DEPENDENCY_PLUGIN}:copy-dependencies",
                    f"-DoutputDirectory={work / 'lib'}",
                    "-DincludeScope=runtime",
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            jars = list((work / "lib").glob("*.jar"))
            if result.returncode != 0 or not jars:
                raise RocketMQSetupError(
                    f"Maven could not fetch RocketMQ {version} (exit {result.returncode}):\n"
                    f"{(result.stdout + result.stderr)[-3000:]}"
                )
            if lib.exists():
                shutil.rmtree(lib)
            (work / "lib").rename(lib)
            done.write_text(f"{len(jars)} jars in {time.monotonic() - started:.1f} s\n")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if out is not None:
            out.write(f"Fetched {len(jars)} jars in {time.monotonic() - started:.1f} s\n")
    return lib


# --------------------------------------------------------------------------- admin output


_ADMIN_SUCCESS = {
    "updateTopic": re.compile(r"create topic to \S+ success"),
    "updateSubGroup": re.compile(r"create subscription group to \S+ success"),
    "updateTopicList": re.compile(r"submit batch of topic config to \S+ success"),
    "updateSubGroupList": re.compile(
        r"submit batch of (?:subscription )?group config to \S+ success"
    ),
}
_ADMIN_FAILURE = re.compile(
    r"(?:command failed|Exception|\[error\]|does not exists|Error:|Usage:|usage: mqadmin)"
)


def check_admin_output(command: str, output: str) -> None:
    """Raise AdminCommandError unless ``output`` shows that ``command`` succeeded.

    ``mqadmin`` prints a stack trace (or an ``[error]`` line, or the usage text)
    and still exits 0 when, say, the broker refuses a topic name or the name
    server is unreachable; success is only ever told by its own line.
    """
    failure = _ADMIN_FAILURE.search(output)
    if failure:
        detail = re.search(r"(?:CODE: \d+\s+DESC: [^\n]*|connect to [^\n]*failed[^\n]*)", output)
        reason = detail.group(0) if detail else f"the output contains {failure.group(0)!r}"
        raise AdminCommandError(command, output, reason)
    pattern = _ADMIN_SUCCESS.get(command)
    if pattern is None:
        if not output.strip():
            raise AdminCommandError(command, output, "no output")
        return
    if not pattern.search(output):
        raise AdminCommandError(command, output, "no success line in the output")


# --------------------------------------------------------------------------- ports and processes


def _port_free(host: str, port: int, *, reuse: bool = False) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _free_port(host: str, taken: set[int]) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port
    raise RocketMQError("no free TCP port found")


@dataclass(frozen=True, slots=True)
class Ports:
    """The TCP ports of one RocketMQ: name server, broker, proxy (gRPC and remoting).

    The broker also listens on ``broker - 2`` (its "fast" channel) and ``broker + 1`` (HA).
    """

    namesrv: int = 9876
    broker: int = 10911
    proxy_grpc: int = 8081
    proxy_remoting: int = 8080

    def all(self) -> tuple[int, ...]:
        return (
            self.namesrv,
            self.broker - 2,
            self.broker,
            self.broker + 1,
            self.proxy_grpc,
            self.proxy_remoting,
        )

    @classmethod
    def free(cls, host: str = "127.0.0.1") -> Ports:
        """Ports nothing listens on right now."""
        taken: set[int] = set()
        for _ in range(200):
            candidate = _free_port(host, taken)
            window = (candidate - 2, candidate - 1, candidate + 1)
            if candidate > 1026 and all(_port_free(host, p) for p in window):
                taken.update((*window, candidate))
                break
            taken.add(candidate)
        else:
            raise RocketMQError("no free port range for the broker")
        namesrv = _free_port(host, taken)
        taken.add(namesrv)
        grpc_port = _free_port(host, taken)
        taken.add(grpc_port)
        remoting = _free_port(host, taken)
        return cls(namesrv=namesrv, broker=candidate, proxy_grpc=grpc_port, proxy_remoting=remoting)


DEFAULT_PORTS = Ports()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as gone.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/status").read_text()
        if re.search(r"^State:\s+Z", status, re.MULTILINE):
            return False
    return True


def _pid_is_ours(pid: int, base_dir: Path) -> bool:
    """True when ``pid`` is a JVM this module started for ``base_dir`` (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    marker = f"-D{MARKER_PROPERTY}={base_dir}".encode()
    return marker in cmdline


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (Linux /proc), or None when unknown."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def _parent_death_signal() -> Callable[[], None]:
    """A preexec_fn asking Linux to SIGTERM the child when its parent dies (tests)."""

    def set_pdeathsig() -> None:
        import ctypes

        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return set_pdeathsig


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- route checks


@dataclass(frozen=True, slots=True)
class Route:
    """What the proxy answered to QueryRoute for one topic."""

    code: str  # "OK", "TOPIC_NOT_FOUND", ...
    message: str
    queues: int
    message_types: frozenset[str]


def query_route(endpoint: str, topic: str, *, timeout: float = 3.0) -> Route:
    """Ask the proxy at ``endpoint`` (host:port) for ``topic``'s route over gRPC.

    Raises RocketMQError when the proxy does not answer at all.
    """
    import grpc
    from rocketmq.grpc_protocol import definition_pb2, service_pb2, service_pb2_grpc

    host, _, port = endpoint.rpartition(":")
    request = service_pb2.QueryRouteRequest()
    request.topic.name = topic
    request.endpoints.scheme = definition_pb2.AddressScheme.IPv4
    address = request.endpoints.addresses.add()
    address.host = host
    address.port = int(port)
    metadata = (
        ("x-mq-client-id", f"meshmart-devstack-{os.getpid()}"),
        ("x-mq-language", "PYTHON"),
        ("x-mq-protocol", "GRPC_V2"),
        ("x-mq-request-id", f"{time.time_ns()}"),
    )
    channel = grpc.insecure_channel(endpoint)
    try:
        stub = service_pb2_grpc.MessagingServiceStub(channel)
        response = stub.QueryRoute(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as exc:
        raise RocketMQError(f"the proxy at {endpoint} did not answer QueryRoute: {exc}") from exc
    finally:
        channel.close()
    types: set[str] = set()
    for queue in response.message_queues:
        for value in queue.accept_message_types:
            types.add(str(definition_pb2.MessageType.Name(value)))
    return Route(
        code=str(definition_pb2.Code.Name(response.status.code)),
        message=str(response.status.message),
        queues=len(response.message_queues),
        message_types=frozenset(types),
    )


# --------------------------------------------------------------------------- the server


@dataclass
class RocketMQServer:
    """One name server plus one proxy in local mode (embedded broker), under ``base_dir``.

    ``start()`` fetches the jars if needed, starts both JVMs, creates ``topics``
    and ``groups`` and waits until the proxy routes every topic; ``stop()`` ends
    them. Use it as a context manager, or through the CLI / the pytest plugin.
    """

    base_dir: Path
    ports: Ports = field(default_factory=Ports)
    host: str = "127.0.0.1"
    version: str = ROCKETMQ_VERSION
    cache_dir: Path | None = None
    topics: Sequence[TopicSpec] | None = None  # None: MeshMart's topology
    groups: Sequence[str] | None = None
    namesrv_heap: str = "128m"
    proxy_heap: str = "384m"
    auto_create_groups: bool = False
    min_invisible_ms: int = 1000  # the proxy's default is 10 s; tests want short ones
    min_long_polling_ms: int = 500  # the proxy's default is 5 s
    parent_death_signal: bool = False  # SIGTERM the JVMs when this process dies
    out: IO[str] | None = None
    pids: dict[str, int] = field(default_factory=dict)
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    # ---- endpoints

    @property
    def proxy_endpoint(self) -> str:
        """The gRPC endpoint clients use (RocketMQBus endpoints), e.g. 127.0.0.1:8081."""
        return f"{self.host}:{self.ports.proxy_grpc}"

    @property
    def endpoints(self) -> str:
        """Same as proxy_endpoint: what ``RocketMQBus(endpoints)`` takes."""
        return self.proxy_endpoint

    @property
    def namesrv_addr(self) -> str:
        """The name server address for admin tools, e.g. 127.0.0.1:9876."""
        return f"{self.host}:{self.ports.namesrv}"

    @property
    def broker_addr(self) -> str:
        """The embedded broker's remoting address."""
        return f"{self.host}:{self.ports.broker}"

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "home" / "logs" / "rocketmqlogs"

    def _say(self, text: str) -> None:
        if self.out is not None:
            self.out.write(text + "\n")
            self.out.flush()

    # ---- configuration files

    def _write_configs(self) -> None:
        conf = self.base_dir / "conf"
        for folder in (conf, self.base_dir / "store", self.base_dir / "home"):
            folder.mkdir(parents=True, exist_ok=True)
        (conf / "namesrv.properties").write_text(
            f"listenPort={self.ports.namesrv}\n"
            f"kvConfigPath={self.base_dir / 'namesrv' / 'kvConfig.json'}\n"
            f"configStorePath={self.base_dir / 'namesrv' / 'namesrv.properties'}\n"
        )
        store = self.base_dir / "store"
        broker = {
            "brokerClusterName": CLUSTER_NAME,
            "brokerName": BROKER_NAME,
            "brokerId": "0",
            "brokerRole": "ASYNC_MASTER",
            "flushDiskType": "ASYNC_FLUSH",
            "brokerIP1": self.host,
            "listenPort": str(self.ports.broker),
            "storePathRootDir": str(store),
            "storePathCommitLog": str(store / "commitlog"),
            # Topics are created up front, as in production (the proxy never creates them).
            "autoCreateTopicEnable": "false",
            "autoCreateSubscriptionGroup": str(self.auto_create_groups).lower(),
            # Small files: a dev box, not a data centre.
            "mappedFileSizeCommitLog": str(64 * 1024 * 1024),
            "mappedFileSizeTimerLog": str(16 * 1024 * 1024),
            # A nearly full laptop disk should not make the broker refuse writes.
            "diskMaxUsedSpaceRatio": "95",
            "diskSpaceWarningLevelRatio": "98",
            "diskSpaceCleanForciblyRatio": "97",
            "timerPrecisionMs": "1000",
        }
        (conf / "broker.properties").write_text(
            "".join(f"{key}={value}\n" for key, value in broker.items())
        )
        proxy = {
            "rocketMQClusterName": CLUSTER_NAME,
            "grpcServerPort": self.ports.proxy_grpc,
            "remotingListenPort": self.ports.proxy_remoting,
            "grpcShutdownTimeSeconds": 1,
            "minInvisibleTimeMillsForRecv": self.min_invisible_ms,
            "grpcClientConsumerMinLongPollingTimeoutMillis": self.min_long_polling_ms,
            "enablePrintJstack": False,
        }
        (conf / "rmq-proxy.json").write_text(json.dumps(proxy, indent=2) + "\n")

    def _java(self, lib: Path, heap: str, main_class: str, *args: str) -> list[str]:
        return [
            require_tool("java"),
            f"-Xms{min(64, _megabytes(heap))}m",
            f"-Xmx{heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-XX:MaxDirectMemorySize={heap}",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.net.preferIPv4Stack=true",
            f"-Drocketmq.home.dir={self.base_dir}",
            f"-Duser.home={self.base_dir / 'home'}",
            f"-D{MARKER_PROPERTY}={self.base_dir}",
            "-cp",
            str(lib / "*"),
            main_class,
            *args,
        ]

    def _spawn(self, name: str, command: list[str], *, detach: bool) -> None:
        log = (self.base_dir / f"{name}.out").open("ab")
        preexec = _parent_death_signal() if self.parent_death_signal and not detach else None
        process = subprocess.Popen(  # noqa: S603 - our own command line
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.base_dir,
            # Own process group: a Ctrl-C meant for us does not hit the JVMs, which
            # stop() then ends in order (proxy first, so the broker can unregister).
            start_new_session=True,
            preexec_fn=preexec,  # only prctl, before exec
        )
        log.close()
        self._processes[name] = process
        self.pids[name] = process.pid

    def _check_alive(self, name: str) -> None:
        pid = self.pids.get(name)
        process = self._processes.get(name)
        exited = process.poll() is not None if process is not None else not _pid_alive(pid or 0)
        if exited:
            raise RocketMQError(
                f"the RocketMQ {name} exited during start-up; its output "
                f"({self.base_dir / (name + '.out')}):\n{_tail(self.base_dir / (name + '.out'))}"
            )

    def _wait_port(self, name: str, port: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive(name)
            if _port_open(self.host, port):
                return
            time.sleep(0.2)
        raise RocketMQError(
            f"the RocketMQ {name} did not open port {port} in time; its output:\n"
            f"{_tail(self.base_dir / (name + '.out'))}"
        )

    # ---- life cycle

    def start(self, *, timeout: float = 180.0, detach: bool = False) -> None:
        """Start (downloading jars the first time), create topics and groups, wait until
        the proxy routes every topic. Raises RocketMQError (RocketMQSetupError when a
        tool is missing); whatever was started is stopped again on failure."""
        require_tool("java")
        lib = ensure_jars(self.version, self.cache_dir, out=self.out)
        self.base_dir = self.base_dir.resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        busy = [p for p in self.ports.all() if not _port_free(self.host, p)]
        if busy:
            raise RocketMQError(
                f"port(s) {', '.join(map(str, busy))} on {self.host} are in use: another "
                "RocketMQ may be running (python -m meshmart_devstack.rocketmq status), "
                "or pick free ports (--free-ports)"
            )
        self._write_configs()
        conf = self.base_dir / "conf"
        started = time.monotonic()
        deadline = started + timeout
        try:
            self._spawn(
                "namesrv",
                self._java(
                    lib,
                    self.namesrv_heap,
                    "org.apache.rocketmq.namesrv.NamesrvStartup",
                    "-c",
                    str(conf / "namesrv.properties"),
                ),
                detach=detach,
            )
            self._wait_port("namesrv", self.ports.namesrv, deadline)
            self._say(f"  name server listening after {time.monotonic() - started:.1f} s")
            # The broker registers with the name server at start and then only every
            # 30 s: start it once the name server listens.
            self._spawn_proxy(lib, deadline, detach=detach)
            self._say(f"  broker and proxy listening after {time.monotonic() - started:.1f} s")
            topics, groups = self._wanted()
            self.create(topics, groups, timeout=max(10.0, deadline - time.monotonic()))
            self._say(f"  topics and groups ready after {time.monotonic() - started:.1f} s")
            self.write_state()
        except BaseException:
            self.stop(timeout=5)
            raise

    def _spawn_proxy(self, lib: Path, deadline: float, *, detach: bool) -> None:
        conf = self.base_dir / "conf"
        self._spawn(
            "proxy",
            self._java(
                lib,
                self.proxy_heap,
                "org.apache.rocketmq.proxy.ProxyStartup",
                "-pm",
                "local",
                "-n",
                self.namesrv_addr,
                "-bc",
                str(conf / "broker.properties"),
                "-pc",
                str(conf / "rmq-proxy.json"),
            ),
            detach=detach,
        )
        self._wait_port("proxy", self.ports.broker, deadline)
        self._wait_port("proxy", self.ports.proxy_grpc, deadline)

    def _broker_ports(self) -> tuple[int, ...]:
        return tuple(p for p in self.ports.all() if p != self.ports.namesrv)

    def stop_broker(self, timeout: float = 30.0) -> None:
        """Stop the proxy and its embedded broker (a broker outage) and wait until their
        ports are closed. The name server and the store stay: ``start_broker()`` brings
        the same broker back, with its messages and consumer offsets."""
        pid = self.pids.pop("proxy", None)
        process = self._processes.pop("proxy", None)
        if process is not None:
            _terminate_child(process, timeout)
        elif pid is not None and _pid_alive(pid) and _pid_is_ours(pid, self.base_dir):
            _terminate_pid(pid, timeout)
        deadline = time.monotonic() + timeout
        while any(_port_open(self.host, p) for p in self._broker_ports()):
            if time.monotonic() > deadline:
                raise RocketMQError("the RocketMQ proxy still listens after it was stopped")
            time.sleep(0.2)
        if (self.base_dir / STATE_FILE).exists():
            self.write_state()

    def start_broker(self, *, timeout: float = 120.0) -> None:
        """Start the proxy and broker again after ``stop_broker()``: same ports, same
        store and configuration; returns once the proxy routes every topic again."""
        if "proxy" in self.pids:
            raise RocketMQError("the RocketMQ proxy is already running")
        if "namesrv" not in self.pids:
            raise RocketMQError("the RocketMQ name server is not running: use start()")
        lib = ensure_jars(self.version, self.cache_dir, out=self.out)
        deadline = time.monotonic() + timeout
        # The JVM binds with SO_REUSEADDR, so connections of the last run still in
        # TIME_WAIT do not matter; only a listener would.
        while not all(_port_free(self.host, p, reuse=True) for p in self._broker_ports()):
            if time.monotonic() > deadline:
                raise RocketMQError("the RocketMQ broker ports did not become free")
            time.sleep(0.2)
        try:
            self._spawn_proxy(lib, deadline, detach=False)
            topics, _groups = self._wanted()
            self.wait_routes(topics, timeout=max(10.0, deadline - time.monotonic()))
        except BaseException:
            pid = self.pids.pop("proxy", None)
            process = self._processes.pop("proxy", None)
            if process is not None:
                _terminate_child(process, 5)
            elif pid is not None:
                _terminate_pid(pid, 5)
            raise
        if (self.base_dir / STATE_FILE).exists():
            self.write_state()

    def _wanted(self) -> tuple[Sequence[TopicSpec], Sequence[str]]:
        default_topics, default_groups = meshmart_topology()
        topics = default_topics if self.topics is None else self.topics
        groups = default_groups if self.groups is None else self.groups
        return topics, groups

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the proxy, then the name server; SIGKILL what is left after ``timeout``."""
        for name in ("proxy", "namesrv"):
            pid = self.pids.get(name)
            if pid is None:
                continue
            process = self._processes.get(name)
            if process is not None:
                _terminate_child(process, timeout)
            elif _pid_alive(pid) and _pid_is_ours(pid, self.base_dir):
                _terminate_pid(pid, timeout)
            self.pids.pop(name, None)
            self._processes.pop(name, None)
        with contextlib.suppress(FileNotFoundError):
            (self.base_dir / STATE_FILE).unlink()

    def __enter__(self) -> RocketMQServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def running(self) -> dict[str, bool]:
        """For each JVM started: is it still alive?"""
        result: dict[str, bool] = {}
        for name, pid in self.pids.items():
            process = self._processes.get(name)
            if process is not None:
                result[name] = process.poll() is None
            else:
                result[name] = _pid_alive(pid) and _pid_is_ours(pid, self.base_dir)
        return result

    def memory(self) -> dict[str, int | None]:
        """Resident memory (bytes) of each JVM."""
        return {name: rss_bytes(pid) for name, pid in self.pids.items()}

    # ---- state file (for `stop` / `status` from another process)

    def write_state(self) -> None:
        state = {
            "version": self.version,
            "host": self.host,
            "ports": asdict(self.ports),
            "pids": self.pids,
            "proxy_endpoint": self.proxy_endpoint,
            "namesrv_addr": self.namesrv_addr,
        }
        (self.base_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def from_state(cls, base_dir: Path, *, out: IO[str] | None = None) -> RocketMQServer | None:
        """The server `start` left running in ``base_dir``, or None."""
        base_dir = base_dir.resolve()
        try:
            state = json.loads((base_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        server = cls(
            base_dir=base_dir,
            ports=Ports(**state["ports"]),
            host=state["host"],
            version=state["version"],
            out=out,
        )
        server.pids = {str(k): int(v) for k, v in state["pids"].items()}
        return server

    # ---- topics and groups

    def mqadmin_command(self) -> list[str]:
        """The admin tool's command line (what ``mqadmin`` runs), without arguments."""
        lib = ensure_jars(self.version, self.cache_dir)
        return [
            require_tool("java"),
            "-Xms32m",
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.net.preferIPv4Stack=true",
            f"-Drocketmq.home.dir={self.base_dir}",
            f"-Duser.home={self.base_dir / 'home'}",
            "-cp",
            str(lib / "*"),
            "org.apache.rocketmq.tools.command.MQAdminStartup",
        ]

    def admin(self, *args: str, timeout: float = 120.0) -> str:
        """Run one ``mqadmin`` command against this server; return its output after
        check_admin_output (AdminCommandError when it failed)."""
        command = [*self.mqadmin_command(), *args]
        if "-n" not in args:
            command += ["-n", self.namesrv_addr]
        try:
            result = subprocess.run(  # noqa: S603 - our own command line
                command,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                cwd=self.base_dir,
            )
        except subprocess.TimeoutExpired as exc:
            raise AdminCommandError(args[0], str(exc.stdout or ""), "timed out") from exc
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise AdminCommandError(args[0], output, f"exit code {result.returncode}")
        check_admin_output(args[0], output)
        return output

    def create(
        self,
        topics: Iterable[TopicSpec] = (),
        groups: Iterable[str] = (),
        *,
        timeout: float = 60.0,
    ) -> None:
        """Create (or update) ``topics`` and consumer ``groups`` with
        ``deploy/rocketmq/create-topics.sh``, then wait until the proxy routes every
        topic with its message type."""
        topic_list = list(topics)
        group_list = list(dict.fromkeys(groups))
        if not topic_list and not group_list:
            return
        conf = self.base_dir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        path = conf / f"topology-{os.getpid()}-{time.time_ns()}.txt"
        path.write_text(topology_text(topic_list, group_list))
        try:
            self.run_init_script(path, timeout=timeout)
        finally:
            path.unlink(missing_ok=True)
        if topic_list:
            self.wait_routes(topic_list, timeout=timeout)
        names = ", ".join(f"{t.name} ({t.message_type})" for t in topic_list)
        self._say(f"RocketMQ topics: {names or '-'}; groups: {', '.join(group_list) or '-'}")

    def run_init_script(self, topology: Path, *, timeout: float = 60.0) -> str:
        """Run ``create-topics.sh`` on the ``topology`` file against this server, with
        the admin tool's JVM as its mqadmin; its output, or AdminCommandError naming
        the script's reason (its last line)."""
        script = init_script()
        command = [
            "sh",
            str(script),
            "-f",
            str(topology),
            "-t",
            str(max(1, math.ceil(timeout))),
            self.namesrv_addr,
            self.broker_addr,
            *self.mqadmin_command(),
        ]
        try:
            result = subprocess.run(  # noqa: S603 - our own command line
                command,
                capture_output=True,
                text=True,
                # The script keeps its own deadline; this one only guards against a hang.
                timeout=timeout + 120,
                check=False,
                cwd=self.base_dir,
            )
        except subprocess.TimeoutExpired as exc:
            raise AdminCommandError(script.name, str(exc.stdout or ""), "timed out") from exc
        output = result.stdout + result.stderr
        if result.returncode != 0:
            lines = output.strip().splitlines()
            reason = lines[-1] if lines else f"exit code {result.returncode}"
            raise AdminCommandError(script.name, output, reason)
        return output

    def create_topic(self, name: str, message_type: MessageType = "NORMAL") -> None:
        """Create one topic (tests: a fresh topic per test keeps tests apart)."""
        self.create([TopicSpec(name, message_type)])

    def create_group(self, *names: str) -> None:
        """Create consumer groups."""
        self.create(groups=names)

    def wait_routes(self, topics: Iterable[TopicSpec], *, timeout: float = 60.0) -> None:
        """Wait until the proxy routes every topic and accepts its message type."""
        deadline = time.monotonic() + timeout
        pending = {t.name: t for t in topics}
        last: dict[str, str] = {}
        while pending:
            for name, spec in list(pending.items()):
                try:
                    route = query_route(self.proxy_endpoint, name)
                except RocketMQError as exc:
                    last[name] = str(exc)
                    continue
                if route.code == "OK" and spec.message_type in route.message_types:
                    del pending[name]
                else:
                    last[name] = f"{route.code} {route.message} types={sorted(route.message_types)}"
            if not pending:
                return
            if time.monotonic() > deadline:
                details = "; ".join(f"{name}: {last.get(name, '?')}" for name in pending)
                raise RocketMQError(f"the proxy does not route these topics: {details}")
            time.sleep(0.3)

    def describe(self) -> str:
        """Endpoints, pids and memory, for people."""
        lines = [
            f"RocketMQ {self.version} (data in {self.base_dir})",
            f"  proxy (gRPC) endpoint  {self.proxy_endpoint}",
            f"  name server            {self.namesrv_addr}",
            f"  broker                 {self.broker_addr}",
        ]
        for name, pid in self.pids.items():
            rss = rss_bytes(pid)
            memory = f"{rss / 2**20:.0f} MiB RSS" if rss else "not running"
            lines.append(f"  {name:<22} pid {pid}, {memory}")
        lines.append(f"  logs                   {self.log_dir}")
        return "\n".join(lines)


def _megabytes(heap: str) -> int:
    match = re.fullmatch(r"(\d+)([mMgG])", heap)
    if not match:
        raise ValueError(f"heap size like 384m or 1g expected, got {heap!r}")
    value = int(match.group(1))
    return value * 1024 if match.group(2) in "gG" else value


def _terminate_child(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _terminate_pid(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m meshmart_devstack.rocketmq",
        description="Apache RocketMQ 5 (name server + proxy with embedded broker) for MeshMart.",
    )
    parser.add_argument(
        "command",
        choices=["run", "start", "stop", "status", "download", "create-topic", "create-group"],
    )
    parser.add_argument("names", nargs="*", help="topic or group names (create-topic/-group)")
    parser.add_argument("--base-dir", type=Path, default=None, help="default: var/rocketmq")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: var/cache/rocketmq")
    parser.add_argument("--version", dest="rmq_version", default=ROCKETMQ_VERSION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--free-ports",
        action="store_true",
        help="pick free ports instead of RocketMQ's defaults (proxy 8081, name server 9876)",
    )
    parser.add_argument("--namesrv-port", type=int, default=DEFAULT_PORTS.namesrv)
    parser.add_argument("--proxy-port", type=int, default=DEFAULT_PORTS.proxy_grpc)
    parser.add_argument("--proxy-remoting-port", type=int, default=DEFAULT_PORTS.proxy_remoting)
    parser.add_argument("--broker-port", type=int, default=DEFAULT_PORTS.broker)
    parser.add_argument("--type", dest="message_type", choices=MESSAGE_TYPES, default="NORMAL")
    parser.add_argument("--timeout", type=float, default=180.0)
    return parser


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    base_dir: Path = (args.base_dir or default_base_dir()).resolve()
    try:
        return _dispatch(args, base_dir, out)
    except RocketMQError as exc:
        out.write(f"error: {exc}\n")
        return 1


def _dispatch(args: argparse.Namespace, base_dir: Path, out: IO[str]) -> int:
    command: str = args.command
    if command == "download":
        lib = ensure_jars(args.rmq_version, args.cache_dir, out=out)
        out.write(f"RocketMQ {args.rmq_version} jars: {lib}\n")
        return 0
    existing = RocketMQServer.from_state(base_dir, out=out)
    if existing is not None and not all(existing.running().values()):
        existing.stop()  # a leftover from a crash: clear it
        existing = None
    if command == "status":
        if existing is None:
            out.write(f"RocketMQ is not running (no live {base_dir / STATE_FILE})\n")
            return 3
        out.write(existing.describe() + "\n")
        try:
            route = query_route(existing.proxy_endpoint, "user-events")
            out.write(f"  proxy answers          QueryRoute(user-events): {route.code}\n")
        except RocketMQError as exc:
            out.write(f"  proxy does not answer: {exc}\n")
            return 1
        return 0
    if command == "stop":
        if existing is None:
            out.write("RocketMQ is not running\n")
            return 0
        existing.stop()
        out.write("RocketMQ stopped\n")
        return 0
    if command in ("create-topic", "create-group"):
        if existing is None:
            out.write("RocketMQ is not running: start it first (make rocketmq)\n")
            return 1
        if not args.names:
            out.write(f"{command} needs at least one name\n")
            return 2
        if command == "create-topic":
            existing.create([TopicSpec(name, args.message_type) for name in args.names])
        else:
            existing.create(groups=args.names)
        return 0
    # run / start
    if existing is not None:
        out.write("RocketMQ is already running:\n" + existing.describe() + "\n")
        return 0 if command == "start" else 1
    ports = (
        Ports.free(args.host)
        if args.free_ports
        else Ports(
            namesrv=args.namesrv_port,
            broker=args.broker_port,
            proxy_grpc=args.proxy_port,
            proxy_remoting=args.proxy_remoting_port,
        )
    )
    server = RocketMQServer(
        base_dir=base_dir,
        ports=ports,
        host=args.host,
        version=args.rmq_version,
        cache_dir=args.cache_dir,
        parent_death_signal=command == "run",
        out=out,
    )
    started = time.monotonic()
    out.write(f"Starting RocketMQ {args.rmq_version} in {base_dir} ...\n")
    out.flush()
    server.start(timeout=args.timeout, detach=command == "start")
    out.write(f"RocketMQ is up in {time.monotonic() - started:.1f} s\n{server.describe()}\n")
    out.write(f"Point the services at it: ROCKETMQ_ENDPOINTS={server.proxy_endpoint}\n")
    out.flush()
    if command == "start":
        out.write("Stop it with: python -m meshmart_devstack.rocketmq stop\n")
        return 0
    return _run_foreground(server, out)


def _run_foreground(server: RocketMQServer, out: IO[str]) -> int:
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    out.write("Press Ctrl-C to stop.\n")
    out.flush()
    code = 0
    try:
        while not stopping.wait(1.0):
            dead = [name for name, alive in server.running().items() if not alive]
            if dead:
                out.write(f"RocketMQ {', '.join(dead)} exited; see {server.base_dir}\n")
                code = 1
                break
    finally:
        out.write("Stopping RocketMQ ...\n")
        out.flush()
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
