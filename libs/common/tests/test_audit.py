"""Audit entries: the audit.recorded payload, the context that builds it, the route dependencies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import ValidationError

from meshmart_common.app import create_app
from meshmart_common.audit import (
    AdminAuditDep,
    AuditActor,
    AuditContext,
    AuditContextDep,
    CallerAuditDep,
)
from meshmart_common.auth import (
    Principal,
    Role,
    SigningKey,
    StaticKeySource,
    TokenVerifier,
    jwks_document,
)
from meshmart_common.events import AuditAction, AuditOutcome, AuditRecorded
from meshmart_common.messaging.envelope import CloudEvent
from meshmart_common.settings import ServiceSettings
from meshmart_common.testing import TokenMaker, assert_problem

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
CONTEXT = AuditContext(service="product", request_id="req-1", client_ip="192.0.2.7")
ADMIN = AuditActor(user_id=1, email="admin@example.com", role="admin")


def test_an_entry_carries_the_context_the_actor_and_the_action() -> None:
    entry = CONTEXT.by(ADMIN).entry(
        AuditAction.PRODUCT_UPDATED,
        target_type="product",
        target_id=12,
        details={"fields": "price_cents,title"},
        occurred_at=AT,
    )
    assert entry.model_dump(mode="json") == {
        "occurred_at": "2026-11-27T09:30:00Z",
        "service": "product",
        "action": "admin.product.updated",
        "outcome": "success",
        "actor_id": 1,
        "actor_email": "admin@example.com",
        "actor_role": "admin",
        "target_type": "product",
        "target_id": "12",
        "request_id": "req-1",
        "client_ip": "192.0.2.7",
        "details": {"fields": "price_cents,title"},
    }
    assert entry.topic == "audit-events"
    assert entry.aggregate_key() == "product:12"


def test_the_key_is_the_target_else_the_actor_else_anonymous() -> None:
    assert CONTEXT.by(ADMIN).entry("auth.login.succeeded").aggregate_key() == "user:1"
    failed = CONTEXT.by(AuditActor(user_id=None, email="who@example.com")).entry(
        AuditAction.LOGIN_FAILED, outcome=AuditOutcome.FAILURE
    )
    assert failed.aggregate_key() == "anonymous"
    assert (failed.actor_id, failed.actor_email, failed.outcome) == (
        None,
        "who@example.com",
        AuditOutcome.FAILURE,
    )


def test_an_email_as_typed_loses_control_characters_and_excess_length() -> None:
    typed = "eve\r\n@example.com" + "x" * 300
    entry = CONTEXT.by(AuditActor(user_id=None, email=typed)).entry(AuditAction.LOGIN_FAILED)
    assert entry.actor_email is not None
    assert len(entry.actor_email) == 254
    assert entry.actor_email.startswith("eve\ufffd\ufffd@example.com")


def test_an_entry_round_trips_through_a_cloudevents_envelope() -> None:
    entry = CONTEXT.by(ADMIN).entry(AuditAction.STOCK_ADJUSTED, target_type="product", target_id=3)
    envelope = entry.to_event(source="/meshmart/product", subject=entry.aggregate_key())
    parsed = AuditRecorded.from_event(CloudEvent.from_json(envelope.to_json()))
    assert parsed == entry
    assert envelope.type == "audit.recorded"


def test_every_action_of_the_vocabulary_fits_the_payload() -> None:
    for action in AuditAction:
        assert CONTEXT.entry(action).action == action.value
        assert action.value.split(".")[0] in {"auth", "admin"}


@pytest.mark.parametrize(
    "changes",
    [
        {"action": "Auth.Login"},
        {"action": "login"},
        {"action": "auth..login"},
        {"action": "a." + "b" * 70},
        {"outcome": "maybe"},
        {"details": {f"k{n}": n for n in range(17)}},
        {"details": {"note": "x" * 201}},
        {"details": {"nested": {"no": "dicts"}}},
        {"service": ""},
    ],
)
def test_the_payload_refuses_unbounded_or_malformed_values(changes: dict[str, Any]) -> None:
    valid: dict[str, Any] = {
        "occurred_at": AT,
        "service": "user",
        "action": "auth.login.failed",
        "outcome": "failure",
    }
    AuditRecorded.model_validate(valid)
    with pytest.raises(ValidationError):
        AuditRecorded.model_validate({**valid, **changes})


def test_a_payload_from_a_newer_producer_keeps_working() -> None:
    entry = AuditRecorded.model_validate(
        {
            "occurred_at": AT,
            "service": "user",
            "action": "auth.mfa.enrolled",  # not in this vocabulary (yet)
            "outcome": "success",
            "geo": "somewhere",  # a field this version does not know
        }
    )
    assert entry.action == "auth.mfa.enrolled"


def test_an_actor_of_a_principal() -> None:
    principal = Principal(user_id=5, role=Role.CUSTOMER, email="c@example.com", token="t")
    assert AuditActor.of(principal) == AuditActor(5, "c@example.com", "customer")


# --- the route dependencies ------------------------------------------------------

probe = APIRouter()


@probe.get("/anonymous")
async def anonymous(audit: AuditContextDep) -> dict[str, Any]:
    """The request's audit context."""
    return _context(audit)


@probe.get("/caller")
async def caller(audit: CallerAuditDep) -> dict[str, Any]:
    """The signed-in caller's audit context."""
    return _context(audit)


@probe.get("/admin")
async def admin(audit: AdminAuditDep) -> dict[str, Any]:
    """The admin's audit context."""
    return _context(audit)


def _context(audit: AuditContext) -> dict[str, Any]:
    actor = audit.actor
    return {
        "service": audit.service,
        "request_id": audit.request_id,
        "client_ip": audit.client_ip,
        "actor": None if actor is None else [actor.user_id, actor.email, actor.role],
    }


class ProbeSettings(ServiceSettings):
    """Settings of the probe app."""

    service_name: str = "probe"


@pytest.fixture
async def http(tmp_path: Path, test_signing_key: SigningKey) -> AsyncIterator[AsyncClient]:
    app: FastAPI = create_app(
        ProbeSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"),
        title="probe",
        description="audit context probe",
        routers=[probe],
    )
    app.state.token_verifier = TokenVerifier(
        StaticKeySource(jwks_document([test_signing_key])),
        issuer="meshmart-user",
        audience="meshmart",
    )
    transport = ASGITransport(app=app, client=("198.51.100.4", 40000))
    async with AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_the_context_names_the_service_request_and_client(http: AsyncClient) -> None:
    response = await http.get(
        "/api/v1/anonymous", headers={"X-Request-ID": "abc-123", "X-Forwarded-For": "203.0.113.9"}
    )
    assert response.json() == {
        "service": "probe",
        "request_id": "abc-123",
        # The TCP peer, as for rate limits: X-Forwarded-For is anyone's to send.
        "client_ip": "198.51.100.4",
        "actor": None,
    }


async def test_the_caller_and_admin_contexts_name_the_verified_caller(
    http: AsyncClient, make_token: TokenMaker
) -> None:
    customer = {"Authorization": f"Bearer {make_token(7, Role.CUSTOMER, email='c@example.com')}"}
    admin = {"Authorization": f"Bearer {make_token(1, Role.ADMIN, email='a@example.com')}"}

    assert (await http.get("/api/v1/caller", headers=customer)).json()["actor"] == [
        7,
        "c@example.com",
        "customer",
    ]
    assert (await http.get("/api/v1/admin", headers=admin)).json()["actor"] == [
        1,
        "a@example.com",
        "admin",
    ]
    assert_problem(await http.get("/api/v1/admin", headers=customer), 403)
    assert_problem(await http.get("/api/v1/admin"), 401)
    assert_problem(await http.get("/api/v1/caller"), 401)
