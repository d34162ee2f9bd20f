"""Audit entries: who did what security-relevant thing, through which request.

A service records an action by publishing an ``audit.recorded`` event
(:class:`meshmart_common.events.AuditRecorded`) through its transactional
outbox, in the transaction of the action itself: the entry exists if and only
if the action committed. Refusals that must leave a trace (a failed login)
raise domain errors with ``commit_session`` set, so their entry commits too.
The data service stores the entries and lists them for admins
(``GET /api/v1/audit``).

Routes take an :class:`AuditContext` (``AuditContextDep`` for anonymous
requests such as a login, ``CallerAuditDep`` for any signed-in caller,
``AdminAuditDep`` for admin routes, which also requires the admin role) and
hand it to the code that knows what happened, which builds the entry with
:meth:`AuditContext.entry` and publishes it with the action's other events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from meshmart_common.auth import AdminUser, CurrentUser, Principal
from meshmart_common.db import utc_now
from meshmart_common.events import (
    AUDIT_EMAIL_MAX_LENGTH,
    AuditOutcome,
    AuditRecorded,
)

_REQUEST_ID_MAX_LENGTH = 128
_CLIENT_IP_MAX_LENGTH = 64

AuditDetails = Mapping[str, str | int | bool | None]
"""A few bounded facts about an action (never a secret): field names, counts, codes."""


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _clip(value: str | None, length: int) -> str | None:
    return None if value is None else value[:length]


def _printable(value: str | None, length: int) -> str | None:
    # A failed login records the email as typed: control characters would
    # break log lines and CSV exports of the audit log.
    return None if value is None else _CONTROL_CHARACTERS.sub("\ufffd", value)[:length]


@dataclass(frozen=True, slots=True)
class AuditActor:
    """Who acts: an account (id, email, role), or only the email a failed login named."""

    user_id: int | None
    email: str | None = None
    role: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> AuditActor:
        """The verified caller of a request."""
        return cls(user_id=principal.user_id, email=principal.email, role=principal.role.value)


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Where an action comes from: the service, the request (id, client address), the actor."""

    service: str
    request_id: str | None = None
    client_ip: str | None = None
    actor: AuditActor | None = None

    def by(self, actor: AuditActor) -> AuditContext:
        """This context with ``actor`` acting (a login learns its account on the way)."""
        return replace(self, actor=actor)

    def entry(
        self,
        action: str,
        *,
        outcome: AuditOutcome = AuditOutcome.SUCCESS,
        target_type: str | None = None,
        target_id: str | int | None = None,
        details: AuditDetails | None = None,
        occurred_at: datetime | None = None,
    ) -> AuditRecorded:
        """The audit.recorded payload of ``action`` in this context (to publish via the outbox)."""
        actor = self.actor or AuditActor(user_id=None)
        return AuditRecorded(
            occurred_at=occurred_at or utc_now(),
            service=self.service,
            action=action,
            outcome=outcome,
            actor_id=actor.user_id,
            actor_email=_printable(actor.email, AUDIT_EMAIL_MAX_LENGTH),
            actor_role=actor.role,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            request_id=_clip(self.request_id, _REQUEST_ID_MAX_LENGTH),
            client_ip=_clip(self.client_ip, _CLIENT_IP_MAX_LENGTH),
            details=dict(details or {}),
        )


def _request_audit_context(request: Request) -> AuditContext:
    request_id = getattr(request.state, "request_id", None)
    return AuditContext(
        service=request.app.state.settings.service_name,
        request_id=request_id if isinstance(request_id, str) and request_id else None,
        client_ip=request.client.host if request.client else None,
    )


async def audit_context(request: Request) -> AuditContext:
    """The request's audit context without an actor (the domain adds one when it knows it).

    The client address is the one the ASGI server reports, as for rate limits:
    behind a proxy, let the server rewrite it from the proxies it trusts
    (``FORWARDED_ALLOW_IPS``); X-Forwarded-For is never read here.
    """
    return _request_audit_context(request)


async def caller_audit_context(request: Request, principal: CurrentUser) -> AuditContext:
    """The audit context of a signed-in caller (401 without a valid token)."""
    return _request_audit_context(request).by(AuditActor.of(principal))


async def admin_audit_context(request: Request, principal: AdminUser) -> AuditContext:
    """The audit context of an admin route: the verified admin acts (403 for anyone else)."""
    return _request_audit_context(request).by(AuditActor.of(principal))


AuditContextDep = Annotated[AuditContext, Depends(audit_context)]
"""The request's audit context, no actor yet (anonymous routes such as login)."""
CallerAuditDep = Annotated[AuditContext, Depends(caller_audit_context)]
"""The signed-in caller's audit context."""
AdminAuditDep = Annotated[AuditContext, Depends(admin_audit_context)]
"""The admin's audit context; requires the admin role like ``AdminUser``."""
