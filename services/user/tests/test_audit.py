"""Audit entries of the user service: logins (good and bad), password changes, token reuse.

Each entry is an audit.recorded row of the outbox, written in the request's
transaction; the refused requests (401, 422, 429) still commit theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient, Response

from meshmart_common.events import AuditRecorded
from meshmart_common.messaging.envelope import CloudEvent
from meshmart_common.testing import assert_problem, audit_entries, outbox_rows
from services.user.tests.conftest import NewAccount
from user_service.repository.models import OutboxEvent

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
PASSWORD = "/api/v1/users/me/password"


async def audit_rows(app: FastAPI) -> list[OutboxEvent]:
    return await outbox_rows(app.state.database, OutboxEvent, AuditRecorded.event_type)


async def audit_entries_of(app: FastAPI) -> list[AuditRecorded]:
    return await audit_entries(app.state.database, OutboxEvent)


async def login(
    client: AsyncClient, email: str, password: str, *, request_id: str | None = None
) -> Response:
    headers = {"X-Request-ID": request_id} if request_id else {}
    return await client.post(LOGIN, json={"email": email, "password": password}, headers=headers)


def summary(entry: AuditRecorded) -> tuple[Any, ...]:
    return (entry.action, entry.outcome.value, entry.actor_id, entry.actor_email, entry.details)


async def test_a_good_login_is_audited_with_the_account_and_the_request(
    client: AsyncClient, app: FastAPI, new_account: NewAccount
) -> None:
    account = await new_account("ada@example.com")

    response = await login(client, "ADA@example.com", account["password"], request_id="rq-login-1")
    assert response.status_code == 200

    rows = await audit_rows(app)
    row = rows[-1]
    assert (row.topic, row.event_type, row.message_key) == (
        "audit-events",
        "audit.recorded",
        f"user:{account['id']}",
    )
    event = CloudEvent.from_json(row.body)
    assert event.source == "/meshmart/user"
    entry = AuditRecorded.from_event(event)
    assert entry.model_dump(mode="json", exclude={"occurred_at"}) == {
        "service": "user",
        "action": "auth.login.succeeded",
        "outcome": "success",
        "actor_id": account["id"],
        "actor_email": "ada@example.com",
        "actor_role": "customer",
        "target_type": "user",
        "target_id": str(account["id"]),
        "request_id": "rq-login-1",
        "client_ip": "127.0.0.1",
        "details": {},
    }
    # Never a secret: neither the password nor any token is in an entry.
    secrets = (account["password"], response.json()["access_token"], account["refresh_token"])
    for stored in rows:
        assert not any(secret in stored.body for secret in secrets)


async def test_a_wrong_password_is_audited_and_committed_with_the_401(
    client: AsyncClient, app: FastAPI, new_account: NewAccount
) -> None:
    account = await new_account("bob@example.com")

    assert_problem(await login(client, "bob@example.com", "not the password"), 401)

    entry = (await audit_entries_of(app))[-1]
    assert summary(entry) == (
        "auth.login.failed",
        "failure",
        account["id"],
        "bob@example.com",
        {"reason": "wrong_password", "failed_attempts": 1},
    )
    assert entry.target_id == str(account["id"])
    row = (await audit_rows(app))[-1]
    assert "not the password" not in row.body


async def test_a_login_to_no_account_is_audited_with_the_email_tried(
    client: AsyncClient, app: FastAPI
) -> None:
    assert_problem(await login(client, " Nobody@Example.com ", "whatever it is"), 401)

    [entry] = await audit_entries_of(app)
    assert summary(entry) == (
        "auth.login.failed",
        "failure",
        None,
        "nobody@example.com",
        {"reason": "unknown_account"},
    )
    assert (entry.actor_role, entry.target_type, entry.target_id) == (None, None, None)
    assert (await audit_rows(app))[0].message_key == "anonymous"


async def test_the_lockout_and_attempts_while_locked_are_audited(
    client: AsyncClient,
    app: FastAPI,
    new_account: NewAccount,
    advance_clock: Callable[[float], None],
) -> None:
    account = await new_account("dave@example.com")
    for _ in range(5):
        assert_problem(await login(client, "dave@example.com", "wrong password"), 401)
    advance_clock(10)
    assert_problem(await login(client, "dave@example.com", account["password"]), 429)

    entries = await audit_entries_of(app)
    assert [entry.details for entry in entries[-6:]] == [
        {"reason": "wrong_password", "failed_attempts": 1},
        {"reason": "wrong_password", "failed_attempts": 2},
        {"reason": "wrong_password", "failed_attempts": 3},
        {"reason": "wrong_password", "failed_attempts": 4},
        {"reason": "wrong_password", "failed_attempts": 5, "locked_seconds": 30},
        {"reason": "account_locked", "retry_after_seconds": 20},
    ]
    assert {(entry.action, entry.actor_id) for entry in entries[-6:]} == {
        ("auth.login.failed", account["id"])
    }


async def test_password_changes_are_audited_the_refused_one_too(
    client: AsyncClient, app: FastAPI, new_account: NewAccount
) -> None:
    account = await new_account("erin@example.com", password="the password")

    refused = await client.put(
        PASSWORD,
        json={"current_password": "a wrong guess", "new_password": "new password!"},
        headers=account["headers"],
    )
    assert_problem(refused, 422, field="current_password")
    changed = await client.put(
        PASSWORD,
        json={"current_password": "the password", "new_password": "new password!"},
        headers=account["headers"],
    )
    assert changed.status_code == 204

    failed, succeeded = (await audit_entries_of(app))[-2:]
    assert summary(failed) == (
        "auth.password.change_failed",
        "failure",
        account["id"],
        "erin@example.com",
        {"reason": "wrong_current_password"},
    )
    assert summary(succeeded) == (
        "auth.password.changed",
        "success",
        account["id"],
        "erin@example.com",
        {"refresh_tokens_revoked": True},
    )
    for row in await audit_rows(app):
        assert "the password" not in row.body
        assert "new password!" not in row.body
        assert "a wrong guess" not in row.body


async def test_a_reused_refresh_token_is_audited(
    client: AsyncClient, app: FastAPI, new_account: NewAccount
) -> None:
    account = await new_account("fay@example.com")
    assert (await client.post(REFRESH, json={"refresh_token": account["refresh_token"]})).is_success
    before = len(await audit_entries_of(app))

    reused = await client.post(REFRESH, json={"refresh_token": account["refresh_token"]})
    assert_problem(reused, 401)

    entries = await audit_entries_of(app)
    assert len(entries) == before + 1
    assert summary(entries[-1]) == (
        "auth.refresh_token.reused",
        "failure",
        account["id"],
        "fay@example.com",
        {"family_revoked": True},
    )
    assert account["refresh_token"] not in (await audit_rows(app))[-1].body


async def test_refreshing_and_unknown_tokens_leave_no_entry(
    client: AsyncClient, app: FastAPI, new_account: NewAccount
) -> None:
    account = await new_account("gil@example.com")
    before = len(await audit_entries_of(app))
    assert (await client.post(REFRESH, json={"refresh_token": account["refresh_token"]})).is_success
    assert_problem(await client.post(REFRESH, json={"refresh_token": "not-a-token"}), 401)
    assert len(await audit_entries_of(app)) == before
