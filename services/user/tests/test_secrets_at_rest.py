"""What the database keeps of secrets: argon2id hashes and refresh token digests only."""

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select

from meshmart_common.db import Database
from user_service.domain.passwords import PasswordHasher
from user_service.repository.models import RefreshToken, User
from user_service.settings import Settings

NewAccount = Callable[..., Awaitable[dict[str, Any]]]


async def stored_rows(settings: Settings) -> tuple[list[User], list[RefreshToken]]:
    database = Database(settings.database_url)
    try:
        async with database.session(read_only=True) as session:
            users = list((await session.scalars(select(User))).all())
            tokens = list((await session.scalars(select(RefreshToken))).all())
            return users, tokens
    finally:
        await database.dispose()


async def test_passwords_are_stored_as_argon2id_hashes(
    new_account: NewAccount, settings: Settings
) -> None:
    await new_account("alice@example.com", password="plain password")
    [user], _ = await stored_rows(settings)
    assert user.password_hash.startswith("$argon2id$")
    assert "plain password" not in user.password_hash


async def test_refresh_tokens_are_stored_as_sha256_digests(
    new_account: NewAccount, settings: Settings
) -> None:
    account = await new_account("bob@example.com")
    _, [token] = await stored_rows(settings)
    secret = account["refresh_token"]
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert token.used_at is None
    assert token.revoked_at is None
    assert (token.expires_at - token.created_at).total_seconds() == 30 * 86_400


async def test_login_upgrades_a_hash_made_with_an_older_cost(
    app: FastAPI, client: AsyncClient, new_account: NewAccount, settings: Settings
) -> None:
    account = await new_account("carol@example.com")
    app.state.components.hasher = PasswordHasher(
        time_cost=2, memory_cost=2048, parallelism=1, max_concurrency=2
    )
    login = await client.post(
        "/api/v1/auth/login", json={"email": account["email"], "password": account["password"]}
    )
    assert login.status_code == 200
    [user], _ = await stored_rows(settings)
    assert "$m=2048,t=2,p=1$" in user.password_hash


async def test_hashing_runs_off_the_event_loop() -> None:
    hasher = PasswordHasher(time_cost=3, memory_cost=65_536, parallelism=1, max_concurrency=1)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        password_hash = await hasher.hash("a password")
    finally:
        ticker.cancel()
    assert ticks > 3
    assert await hasher.verify(password_hash, "a password")
    assert not await hasher.verify(password_hash, "another one")
    assert not await hasher.verify("not a hash", "a password")
