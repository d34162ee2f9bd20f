"""`python -m user_service seed`: the admin and the demo customers, idempotently."""

from httpx import AsyncClient
from sqlalchemy import func, select

from meshmart_common.db import Database
from user_service.domain.seed import seed_accounts
from user_service.repository.models import User
from user_service.settings import Settings


async def roles_by_email(database: Database) -> dict[str, str]:
    async with database.session(read_only=True) as session:
        rows = await session.execute(select(User.email, User.role).order_by(User.email))
        return {email: role.value for email, role in rows}


async def test_seeding_twice_creates_the_accounts_once(settings: Settings) -> None:
    database = Database(settings.database_url)
    try:
        first = await seed_accounts(settings, database)
        assert "created 4 account(s)" in first
        assert "admin login: admin@meshmart.local / meshmart-admin" in first
        second = await seed_accounts(settings, database)
        assert "nothing new" in second
        assert "admin login: admin@meshmart.local / meshmart-admin" in second
        assert await roles_by_email(database) == {
            "admin@meshmart.local": "admin",
            "alice@example.com": "customer",
            "bob@example.com": "customer",
            "carol@example.com": "customer",
        }
        async with database.session(read_only=True) as session:
            assert (await session.execute(select(func.count()).select_from(User))).scalar() == 4
    finally:
        await database.dispose()


async def test_seeded_admin_can_log_in_and_list_users(
    settings: Settings, client: AsyncClient
) -> None:
    database = Database(settings.database_url)
    try:
        await seed_accounts(settings, database)
    finally:
        await database.dispose()
    login = await client.post(
        "/api/v1/auth/login", json={"email": "admin@meshmart.local", "password": "meshmart-admin"}
    )
    assert login.status_code == 200
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    listed = (await client.get("/api/v1/users", headers=headers)).json()
    assert listed["total"] == 4
    alice = await client.post(
        "/api/v1/auth/login", json={"email": "alice@example.com", "password": "meshmart-demo"}
    )
    assert alice.status_code == 200
