"""The compose stack's MySQL init script, run against the test suite's real MariaDB.

deploy/compose/mysql/initdb/10-meshmart-databases.sql runs as root (as the
mysql image runs it on a new volume). Then every service migrates and seeds
with its own account, taken from docker-compose.yml's DATABASE_URL, and each
account is shown to reach its own database and nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pymysql
import pytest
from pymysql.constants import CLIENT
from sqlalchemy.engine import URL, make_url

from meshmart_common.testing import ExternalMySQL, MariaDBServer
from tests.deploy.compose_file import ROOT, SERVICES, environment, interpolate, load, services
from tests.stack import FAST_HASHING

INIT_SQL = ROOT / "deploy" / "compose" / "mysql" / "initdb" / "10-meshmart-databases.sql"
SEEDED = ("user", "product", "trade")
# MySQL's "access denied" errors: to a database, to a table, a global privilege.
DENIED = {1044, 1142, 1227}


def connect(url: URL, database: str | None = None, *, multi: bool = False) -> Any:
    """A PyMySQL connection for ``url``'s account (autocommit)."""
    return pymysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=database,
        autocommit=True,
        connect_timeout=5,
        client_flag=CLIENT.MULTI_STATEMENTS if multi else 0,
    )


def query(url: URL, sql: str, database: str | None = None) -> list[tuple[Any, ...]]:
    conn = connect(url, database)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    finally:
        conn.close()


def denied(url: URL, sql: str, database: str | None = None) -> int:
    """The MySQL error code ``sql`` fails with for ``url``'s account (0: it did not fail)."""
    try:
        query(url, sql, database)
    except (pymysql.err.OperationalError, pymysql.err.ProgrammingError) as exc:
        code: int = exc.args[0]
        return code
    return 0


def sql(template: str, **names: str | None) -> str:
    """``template`` with back-quoted identifiers: names of databases and tables that
    come from SHOW TABLES and docker-compose.yml, never from input."""
    return template.format(**{key: f"`{value}`" for key, value in names.items()})


def run_script(root: URL, script: Path) -> None:
    """Run an SQL file as root, statement after statement, as the mysql image does."""
    conn = connect(root, multi=True)
    try:
        with conn.cursor() as cursor:
            cursor.execute(script.read_text())
            while cursor.nextset():
                pass
    finally:
        conn.close()


@pytest.fixture(scope="module")
def accounts(mysql_server: MariaDBServer | ExternalMySQL) -> Iterator[dict[str, URL]]:
    """The init script applied to the test server; each service's URL from compose,
    pointed at that server."""
    root = mysql_server.url
    # mariadb-install-db creates anonymous accounts (''@'localhost'), which would
    # shadow 'meshmart_x'@'%' for connections from this machine; the mysql image
    # has none.
    for (host,) in query(root, "SELECT host FROM mysql.user WHERE user = ''"):
        query(root, f"DROP USER ''@'{host}'")
    run_script(root, INIT_SQL)
    compose = interpolate(load())
    urls = {
        service: make_url(environment(services(compose)[service])["DATABASE_URL"]).set(
            host=root.host, port=root.port
        )
        for service in SERVICES
    }
    try:
        yield urls
    finally:
        for url in urls.values():
            query(root, f"DROP DATABASE IF EXISTS `{url.database}`")
            query(root, f"DROP USER IF EXISTS '{url.username}'@'%'")


def cli(service: str, command: str, url: URL, var_dir: Path) -> subprocess.CompletedProcess[str]:
    """``python -m <service>_service <command>`` with ``url`` as its DATABASE_URL."""
    env = {
        **os.environ,
        **FAST_HASHING,
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "ENVIRONMENT": "development",
        "VAR_DIR": str(var_dir),
        "BUS_BACKEND": "local",
    }
    return subprocess.run(
        [sys.executable, "-m", f"{service}_service", command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def migrated(accounts: dict[str, URL], tmp_path_factory: pytest.TempPathFactory) -> dict[str, URL]:
    """Every service migrated, and the seeded ones seeded, each with its own account."""
    var_dir = tmp_path_factory.mktemp("mysql-init-var")
    with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
        migrations = dict(
            zip(
                SERVICES,
                pool.map(lambda s: cli(s, "migrate", accounts[s], var_dir), SERVICES),
                strict=True,
            )
        )
        for service, done in migrations.items():
            assert done.returncode == 0, f"{service} migrate:\n{done.stdout}{done.stderr}"
        seeds = dict(
            zip(
                SEEDED,
                pool.map(lambda s: cli(s, "seed", accounts[s], var_dir), SEEDED),
                strict=True,
            )
        )
        for service, done in seeds.items():
            assert done.returncode == 0, f"{service} seed:\n{done.stdout}{done.stderr}"
    return accounts


def _tables(url: URL) -> list[str]:
    return [row[0] for row in query(url, "SHOW TABLES", url.database)]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_migrates_and_works_with_its_own_account(
    migrated: dict[str, URL], service: str
) -> None:
    url = migrated[service]
    tables = _tables(url)
    assert "alembic_version" in tables
    assert len(tables) > 3
    assert query(url, "SELECT COUNT(*) FROM alembic_version", url.database) == [(1,)]
    # Every kind of statement the service runs, on every one of its tables
    # (WHERE 1 = 0: the privilege is checked, nothing changes).
    for table in tables:
        query(url, sql("SELECT COUNT(*) FROM {t}", t=table), url.database)
        query(url, sql("DELETE FROM {t} WHERE 1 = 0", t=table), url.database)
        query(url, sql("INSERT INTO {t} SELECT * FROM {t} WHERE 1 = 0", t=table), url.database)
    query(url, "UPDATE alembic_version SET version_num = version_num", url.database)
    if service in SEEDED:
        rows = sum(
            query(url, sql("SELECT COUNT(*) FROM {t}", t=t), url.database)[0][0]
            for t in tables
            if t != "alembic_version"
        )
        assert rows > 0, f"{service}'s seed wrote nothing"


@pytest.mark.parametrize("service", SERVICES)
def test_an_account_cannot_read_another_services_database(
    migrated: dict[str, URL], service: str
) -> None:
    url = migrated[service]
    visible = {row[0] for row in query(url, "SHOW DATABASES")}
    assert visible == {"information_schema", url.database}
    for other, other_url in migrated.items():
        if other == service:
            continue
        table = _tables(other_url)[0]
        read = sql("SELECT * FROM {db}.{t}", db=other_url.database, t=table)
        write = sql("INSERT INTO {db}.alembic_version VALUES ('x')", db=other_url.database)
        assert denied(url, read) in DENIED, f"{service} reads {other}"
        assert denied(url, write) in DENIED, f"{service} writes {other}"
        assert denied(url, "SELECT 1", other_url.database) in DENIED, f"{service} uses {other}"


@pytest.mark.parametrize("service", SERVICES)
def test_an_account_has_no_privilege_beyond_its_database(
    migrated: dict[str, URL], service: str
) -> None:
    url = migrated[service]
    assert denied(url, "SELECT * FROM mysql.user") in DENIED
    assert denied(url, "CREATE DATABASE `meshmart_intruder`") in DENIED
    assert denied(url, f"CREATE USER 'intruder_{service}'@'%'") in DENIED
    grants = [row[0] for row in query(url, "SHOW GRANTS")]
    assert len(grants) == 2, grants
    assert grants[0].startswith("GRANT USAGE ON *.*")
    assert f"ON `{url.database}`.*" in grants[1]
    assert "ALL PRIVILEGES" not in grants[1]
    assert "WITH GRANT OPTION" not in " ".join(grants)
