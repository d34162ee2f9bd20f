"""pytest plugin with the fixtures every service's tests share.

Loaded with ``-p meshmart_common.testing`` (set in the root pyproject). A
service's conftest provides two fixtures:

- ``service_metadata``: the service's SQLAlchemy MetaData;
- ``service_app_factory``: ``Callable[[TestContext], FastAPI]``.

The plugin then gives ``app``, ``client``, tokens for a customer and an admin,
and a database per test: every database fixture runs once on SQLite and once
on a real MariaDB server that the session starts in a temporary data
directory (or the server in MESHMART_TEST_MYSQL_URL).

:class:`PlatformContract` holds the tests every service must pass (health,
metrics, docs, problem+json errors, migrations); a service's tests subclass it.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from httpx import ASGITransport, AsyncClient
from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.engine import URL, make_url

from meshmart_common.auth import (
    Role,
    SigningKey,
    StaticKeySource,
    TokenVerifier,
    jwks_document,
)
from meshmart_common.db import Database
from meshmart_common.errors import PROBLEM_JSON
from meshmart_common.events import AuditRecorded
from meshmart_common.messaging.envelope import CloudEvent
from meshmart_common.messaging.models import OutboxMixin
from meshmart_common.settings import Environment, ServiceSettings

BACKENDS = ("sqlite", "mariadb")
MARIADB_HINT = (
    "MariaDB is needed for the MariaDB half of the tests. Install it with "
    "`apt-get install mariadb-server` (Debian/Ubuntu; `bash .ci/run` does this), "
    "or point MESHMART_TEST_MYSQL_URL at a server, e.g. mysql+aiomysql://root:pw@127.0.0.1:3306"
)

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@dataclass(frozen=True)
class TestContext:
    """What a service's app factory gets in tests."""

    __test__ = False  # a fixture value, not a test class for pytest to collect

    database_url: str
    signing_key: SigningKey
    signing_key_path: Path
    tmp_path: Path

    def settings(self, settings_class: type[SettingsT], **overrides: Any) -> SettingsT:
        """A service's settings for the test app: test environment, this database, tmp var_dir."""
        values: dict[str, Any] = {
            "environment": Environment.TEST,
            "database_url": self.database_url,
            "var_dir": self.tmp_path,
        }
        values.update(overrides)
        return settings_class(**values)


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- MariaDB ----------------------------------------------------------------


def _find(binary: str) -> str | None:
    return shutil.which(binary) or next(
        (
            str(p)
            for d in ("/usr/sbin", "/usr/bin", "/usr/local/bin")
            if (p := Path(d) / binary).exists()
        ),
        None,
    )


class MariaDBServer:
    """A throw-away MariaDB server in a temporary data directory."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> URL:
        """Server URL (no database) for the async driver."""
        return URL.create("mysql+aiomysql", username="root", host="127.0.0.1", port=self.port)

    def start(self) -> None:
        """Initialise the data directory and start mariadbd; fail with a hint when missing."""
        mariadbd = _find("mariadbd") or _find("mysqld")
        install_db = _find("mariadb-install-db") or _find("mysql_install_db")
        if mariadbd is None or install_db is None:
            pytest.fail(f"mariadbd not found. {MARIADB_HINT}", pytrace=False)
        datadir = self.base / "data"
        datadir.mkdir(parents=True)
        user = ["--user=root"] if os.geteuid() == 0 else []
        init = subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *user,
            ],
            capture_output=True,
            check=False,
            timeout=180,
        )
        if init.returncode != 0:
            pytest.fail(
                f"mariadb-install-db failed: {init.stderr.decode(errors='replace')[-2000:]}\n"
                f"{MARIADB_HINT}",
                pytrace=False,
            )
        log = (self.base / "mariadb.log").open("wb")
        self.process = subprocess.Popen(
            [
                mariadbd,
                "--no-defaults",
                f"--datadir={datadir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.base / 'mysql.sock'}",
                f"--pid-file={self.base / 'mariadb.pid'}",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=2",
                "--innodb-doublewrite=0",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
                "--max-connections=500",
                *user,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    "mariadbd exited at start-up:\n"
                    + (self.base / "mariadb.log").read_text(errors="replace")[-2000:],
                    pytrace=False,
                )
            try:
                self.execute("SELECT 1")
                return
            except Exception:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"mariadbd did not answer within 60 s. {MARIADB_HINT}", pytrace=False)

    def execute(self, *statements: str, database: str | None = None) -> None:
        """Run statements with the sync driver."""
        import pymysql

        conn = pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            password="",
            database=database,
            connect_timeout=2,
            autocommit=True,
        )
        try:
            with conn.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the server."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


class ExternalMySQL:
    """A server given by MESHMART_TEST_MYSQL_URL."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url).set(drivername="mysql+aiomysql", database=None)

    def execute(self, *statements: str, database: str | None = None) -> None:
        """Run statements with the sync driver."""
        import pymysql

        conn = pymysql.connect(
            host=self.url.host,
            port=self.url.port or 3306,
            user=self.url.username,
            password=self.url.password or "",
            database=database,
            autocommit=True,
        )
        try:
            with conn.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            conn.close()


@pytest.fixture(scope="session")
def mysql_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MariaDBServer | ExternalMySQL]:
    """A MariaDB/MySQL server for this test session."""
    external = os.environ.get("MESHMART_TEST_MYSQL_URL")
    if external:
        yield ExternalMySQL(external)
        return
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


_prepared_mysql: set[str] = set()


def _sync_url(url: str) -> str:
    parsed = make_url(url)
    driver = {"sqlite": "sqlite", "mysql": "mysql+pymysql"}[parsed.get_backend_name()]
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def create_schema(url: str, metadata: MetaData) -> None:
    """Create ``metadata``'s tables at ``url`` (sync; tests only)."""
    engine = create_engine(_sync_url(url))
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


def new_mysql_database(server: MariaDBServer | ExternalMySQL, prefix: str = "t") -> str:
    """Create an empty database; return its async URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    server.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    return server.url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``mariadb``: every test using a database runs on both."""
    backend: str = request.param
    return backend


@pytest.fixture
def database_url(
    db_backend: str, request: pytest.FixtureRequest, tmp_path: Path, service_metadata: MetaData
) -> str:
    """A database with the service's tables and no rows."""
    if db_backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
        create_schema(url, service_metadata)
        return url
    server: MariaDBServer | ExternalMySQL = request.getfixturevalue("mysql_server")
    key = hashlib.sha1(  # noqa: S324 - a name, not security
        ",".join(sorted(service_metadata.tables)).encode()
    ).hexdigest()[:10]
    name = f"svc_{key}"
    url = server.url.set(database=name).render_as_string(hide_password=False)
    if name not in _prepared_mysql:
        server.execute(
            f"DROP DATABASE IF EXISTS `{name}`",
            f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        )
        create_schema(url, service_metadata)
        _prepared_mysql.add(name)
    else:
        tables = [t.name for t in reversed(service_metadata.sorted_tables)]
        server.execute(
            "SET FOREIGN_KEY_CHECKS=0",
            *(f"DELETE FROM `{t}`" for t in tables),
            "SET FOREIGN_KEY_CHECKS=1",
            database=name,
        )
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A Database on the test database, without an app around it (direct reads and writes)."""
    db = Database(database_url)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def empty_database_url(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database without tables (for migration tests)."""
    if db_backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    server: MariaDBServer | ExternalMySQL = request.getfixturevalue("mysql_server")
    return new_mysql_database(server, "mig")


def migrations_diff(migrations_dir: Path, url: str, metadata: MetaData) -> list[Any]:
    """Apply the migrations to an empty database; return how it differs from the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from meshmart_common.db import upgrade_database

    upgrade_database(migrations_dir, url)
    engine = create_engine(_sync_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


# --- tokens and app ---------------------------------------------------------


@pytest.fixture(scope="session")
def test_signing_key() -> SigningKey:
    """The RSA key that signs every token in this test session."""
    return SigningKey.generate()


@pytest.fixture
def test_context(database_url: str, test_signing_key: SigningKey, tmp_path: Path) -> TestContext:
    """What the service's app factory needs."""
    key_path = tmp_path / "jwt-signing-key.pem"
    key_path.write_bytes(test_signing_key.to_pem())
    return TestContext(
        database_url=database_url,
        signing_key=test_signing_key,
        signing_key_path=key_path,
        tmp_path=tmp_path,
    )


@pytest.fixture
def app(
    service_app_factory: Callable[[TestContext], FastAPI], test_context: TestContext
) -> FastAPI:
    """The service app on a fresh database, trusting the test signing key."""
    application = service_app_factory(test_context)
    settings = application.state.settings
    application.state.token_verifier = TokenVerifier(
        StaticKeySource(jwks_document([test_context.signing_key])),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    return application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """An httpx client talking to the app in process (lifespan included)."""
    from asgi_lifespan import LifespanManager

    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


TokenMaker = Callable[..., str]


@pytest.fixture
def make_token(test_signing_key: SigningKey) -> TokenMaker:
    """``make_token(user_id, role="customer", ttl=900, email=None)`` -> a signed access token."""

    def make(
        user_id: int,
        role: str | Role = Role.CUSTOMER,
        *,
        ttl: int = 900,
        email: str | None = None,
        issuer: str = "meshmart-user",
        audience: str = "meshmart",
        now: float | None = None,
    ) -> str:
        return test_signing_key.issue(
            subject=user_id,
            role=Role(role),
            email=email,
            issuer=issuer,
            audience=audience,
            ttl_seconds=ttl,
            now=now,
        )

    return make


@pytest.fixture
def customer_token(make_token: TokenMaker) -> str:
    """An access token of customer 1001."""
    return make_token(1001, Role.CUSTOMER, email="customer@example.com")


@pytest.fixture
def admin_token(make_token: TokenMaker) -> str:
    """An access token of admin 1."""
    return make_token(1, Role.ADMIN, email="admin@example.com")


@pytest.fixture
def customer_headers(customer_token: str) -> dict[str, str]:
    """Authorization header of the test customer."""
    return {"Authorization": f"Bearer {customer_token}"}


@pytest.fixture
def admin_headers(admin_token: str) -> dict[str, str]:
    """Authorization header of the test admin."""
    return {"Authorization": f"Bearer {admin_token}"}


OutboxT = TypeVar("OutboxT", bound=OutboxMixin)


async def outbox_rows(
    database: Database, outbox: type[OutboxT], *event_types: str
) -> list[OutboxT]:
    """A service's outbox rows in the order they were written (of ``event_types`` when given)."""
    query = select(outbox).order_by(outbox.id)
    if event_types:
        query = query.where(outbox.event_type.in_(event_types))
    async with database.session(read_only=True) as session:
        return list(await session.scalars(query))


async def audit_entries(database: Database, outbox: type[OutboxMixin]) -> list[AuditRecorded]:
    """The audit.recorded entries a service's outbox holds, in order."""
    return [
        AuditRecorded.from_event(CloudEvent.from_json(row.body))
        for row in await outbox_rows(database, outbox, AuditRecorded.event_type)
    ]


def assert_problem(response: Any, status: int, *, field: str | None = None) -> dict[str, Any]:
    """Assert ``response`` is an RFC 9457 problem with ``status`` (and a field error)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert body["title"]
    assert body["detail"]
    if field is not None:
        fields = [e["field"] for e in body.get("errors", [])]
        assert field in fields, fields
    return body


# --- the platform contract ------------------------------------------------------


def threadpool_dependencies(app: FastAPI) -> set[str]:
    """The dependencies of app's routes that FastAPI would run in its threadpool.

    FastAPI runs every plain ``def`` dependency through a worker thread, one
    hop per dependency per request. MeshMart's dependencies only build objects
    or read request state, so they are ``async def`` and run inline.
    """
    found: set[str] = set()

    def walk(dependant: Dependant) -> None:
        for sub in dependant.dependencies:
            call = sub.call
            if call is not None and not (
                inspect.iscoroutinefunction(call)
                or inspect.isasyncgenfunction(call)
                or inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004
            ):
                found.add(f"{call.__module__}.{getattr(call, '__qualname__', repr(call))}")
            walk(sub)

    def visit(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                walk(route.dependant)
            included = getattr(route, "original_router", None)  # an include_router()
            if included is not None:
                visit(included.routes)

    visit(app.routes)
    return found


class PlatformContract:
    """The platform endpoints every service answers, and its migrations matching its models.

    A service's tests subclass it (the class name must start with ``Test``)
    and set the three class attributes; the service's conftest provides
    ``service_metadata`` and ``service_app_factory`` as for every other test.
    """

    service_name: ClassVar[str]
    """The name /healthz reports (``ServiceSettings.service_name``)."""
    title: ClassVar[str]
    """The title of the service's OpenAPI document."""
    migrations_dir: ClassVar[Path]
    """The service's Alembic folder (services/<name>/migrations)."""
    readiness_checks: ClassVar[frozenset[str]] = frozenset({"database", "bus"})
    """The dependencies /readyz checks (every service runs on the database and the bus)."""

    async def test_healthz_and_readyz_answer_ok(self, client: AsyncClient) -> None:
        health = await client.get("/healthz")
        assert health.json() == {"status": "ok", "service": self.service_name}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == dict.fromkeys(self.readiness_checks, "ok")

    async def test_metrics_and_openapi_are_served(self, client: AsyncClient) -> None:
        await client.get("/healthz")
        metrics = await client.get("/metrics")
        assert 'http_requests_total{method="GET",route="/healthz",status="200"}' in metrics.text
        docs = await client.get("/docs")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()
        schema = (await client.get("/openapi.json")).json()
        assert schema["info"]["title"] == self.title

    async def test_every_operation_is_described_and_its_errors_are_problem_json(
        self, client: AsyncClient
    ) -> None:
        schema = (await client.get("/openapi.json")).json()
        problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
        for path, item in schema["paths"].items():
            for method, operation in item.items():
                assert operation.get("description"), (path, method)
                for status, response in operation["responses"].items():
                    if status.startswith(("4", "5")):
                        assert response["content"] == {PROBLEM_JSON: problem}, (path, method)
        assert "Problem" in schema["components"]["schemas"]
        assert "HTTPValidationError" not in schema["components"]["schemas"]

    def test_no_dependency_runs_in_the_threadpool(self, app: FastAPI) -> None:
        assert threadpool_dependencies(app) == set()

    def test_migrations_match_the_models(
        self, empty_database_url: str, service_metadata: MetaData
    ) -> None:
        assert migrations_diff(self.migrations_dir, empty_database_url, service_metadata) == []
