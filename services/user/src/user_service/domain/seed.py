"""Demo data: the admin account and three demo customers (idempotent)."""

from __future__ import annotations

from meshmart_common.auth import Role
from meshmart_common.db import Database
from meshmart_common.settings import ServiceSettings
from user_service.domain.accounts import AccountService
from user_service.domain.clock import SystemClock
from user_service.domain.passwords import password_hasher
from user_service.events.publisher import user_event_publisher
from user_service.repository.users import UserRepository
from user_service.settings import Settings

DEMO_CUSTOMERS = (
    ("alice@example.com", "Alice Example"),
    ("bob@example.com", "Bob Example"),
    ("carol@example.com", "Carol Example"),
)
DEMO_PASSWORD = "meshmart-demo"  # noqa: S105 - published demo credentials


async def seed_accounts(settings: ServiceSettings, database: Database) -> str:
    """Create the admin and, outside production, the demo customers; say what happened.

    Existing accounts are left alone (a changed ADMIN_PASSWORD does not reset
    an existing admin). Production gets no demo customers: their password is public.

    Each new demo customer gets its user.registered event in the outbox, in the
    seeding transaction, as a registration would; the service's outbox relay
    publishes it once the service runs (the admin is no customer: no event).
    """
    if not isinstance(settings, Settings):
        raise TypeError("seed_accounts needs the user service's Settings")
    production = not settings.is_development
    wanted: list[tuple[str, str, str | None, Role]] = [
        (settings.admin_email, settings.admin_password.get_secret_value(), "Admin", Role.ADMIN)
    ]
    if not production:
        wanted += [(email, DEMO_PASSWORD, name, Role.CUSTOMER) for email, name in DEMO_CUSTOMERS]

    created: list[str] = []
    async with database.session() as session:
        accounts = AccountService(
            session,
            hasher=password_hasher(settings),
            clock=SystemClock(),
            publisher=user_event_publisher(),
        )
        users = UserRepository(session)
        for email, password, full_name, role in wanted:
            if await users.get_by_email(email) is None:
                await accounts.register(
                    email=email, password=password, full_name=full_name, role=role
                )
                created.append(email)

    # One line names the admin: the launcher shows the lines mentioning it.
    summary = (
        f"created {len(created)} account(s)"
        if created
        else "nothing new: the seeded accounts already exist"
    )
    admin_password = (
        "(the ADMIN_PASSWORD you set)" if production else settings.admin_password.get_secret_value()
    )
    lines = [summary, f"admin login: {settings.admin_email} / {admin_password}"]
    if not production:
        customers = ", ".join(email for email, _ in DEMO_CUSTOMERS)
        lines.append(f"demo customers: {customers} / {DEMO_PASSWORD}")
    return "\n".join(lines)
