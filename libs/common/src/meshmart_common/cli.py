"""The command line every service shares: ``python -m <name>_service migrate|seed|serve``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from meshmart_common.db import Database, upgrade_database
from meshmart_common.settings import ServiceSettings

Seeder = Callable[[ServiceSettings, Database], Awaitable[str | None]]


def run_cli(
    *,
    settings_factory: Callable[[], ServiceSettings],
    app_path: str,
    migrations_dir: Path,
    seeder: Seeder | None = None,
    argv: list[str] | None = None,
) -> int:
    """Parse ``argv`` and run one command.

    - ``migrate``: apply the Alembic migrations to the configured database;
    - ``seed``: insert demo data (idempotent; prints what it created);
    - ``serve``: run uvicorn on the configured host and port.
    """
    parser = argparse.ArgumentParser(prog=app_path.split(".")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("seed", help="insert demo data (idempotent)")
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    settings = settings_factory()

    if args.command == "migrate":
        upgrade_database(migrations_dir, settings.database_url)
        print(f"{settings.service_name}: migrated {settings.database_url.split('@')[-1]}")
        return 0
    if args.command == "seed":
        if seeder is None:
            print(f"{settings.service_name}: no demo data to seed")
            return 0

        async def seed() -> str | None:
            database = Database(settings.database_url)
            try:
                return await seeder(settings, database)
            finally:
                await database.dispose()

        message = asyncio.run(seed())
        if message:
            print(f"{settings.service_name}: {message}")
        return 0

    import uvicorn

    uvicorn.run(
        app_path,
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        # X-Forwarded-For/-Proto are believed only from the proxies named in
        # FORWARDED_ALLOW_IPS (the gateway); by default from nobody, so a
        # client cannot pick the address that rate limits count it under.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
    )
    return 0
