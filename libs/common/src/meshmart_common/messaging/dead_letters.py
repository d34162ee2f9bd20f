"""Dead letters: list them, replay one, discard one; and the admin API around that.

A service mounts ``dead_letter_router(...)`` with its other routers, which
puts it at /api/v1/admin/dead-letters (admins only):

- ``GET    /admin/dead-letters``              parked (or still retrying) messages, paginated;
- ``POST   /admin/dead-letters/{id}/replay``  run the group's handler on the stored message;
- ``DELETE /admin/dead-letters/{id}``         drop a message that should never be handled.

A replay runs exactly like a delivery (inbox row and handler in one
transaction) and deletes the dead letter in that same transaction, so a
replayed event has its effect once, even when the bus redelivers it as well.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import BaseModel
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.auth import AdminUser
from meshmart_common.db import Database, DatabaseDep, ReadSessionDep
from meshmart_common.errors import Conflict, NotFound
from meshmart_common.messaging.consumer import (
    AlreadyHandled,
    ConsumerSpec,
    EventHandler,
    IncomingEvent,
    describe_error,
    handle_once,
)
from meshmart_common.messaging.envelope import CloudEvent, InvalidEnvelope
from meshmart_common.messaging.models import DeadLetterMixin, InboxMixin
from meshmart_common.pagination import Page, PageDep

logger = logging.getLogger("meshmart.messaging.dead_letters")

DeadLetterState = Literal["parked", "retrying"]
ReplayOutcome = Literal["handled", "already_handled"]
MAX_ID = 2**63 - 1


class DeadLetterNotFound(LookupError):
    """No dead letter with this id."""


class ReplayRefused(Exception):
    """The dead letter cannot be replayed as it is (still retrying, no handler)."""


class ReplayFailed(Exception):
    """The handler failed again; ``error`` says how (the dead letter stays)."""

    def __init__(self, dead_letter_id: int, error: str) -> None:
        super().__init__(f"replaying dead letter {dead_letter_id} failed: {error}")
        self.dead_letter_id = dead_letter_id
        self.error = error


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """A successful replay: the event is handled and the dead letter is gone."""

    dead_letter_id: int
    event_id: str
    outcome: ReplayOutcome


async def list_dead_letters(
    session: AsyncSession,
    model: type[DeadLetterMixin],
    *,
    state: DeadLetterState = "parked",
    consumer_group: str | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[DeadLetterMixin], int]:
    """One page of dead letters in id order, and how many match."""
    conditions: list[ColumnElement[bool]] = [
        model.parked_at.is_not(None) if state == "parked" else model.parked_at.is_(None)
    ]
    if consumer_group is not None:
        conditions.append(model.consumer_group == consumer_group)
    total = await session.scalar(select(func.count(model.id)).where(*conditions))
    rows = await session.scalars(
        select(model).where(*conditions).order_by(model.id).offset(offset).limit(limit)
    )
    return list(rows), int(total or 0)


async def replay_dead_letter(
    database: Database,
    dead_letter_id: int,
    *,
    dead_letters: type[DeadLetterMixin],
    inbox: type[InboxMixin],
    handlers: Mapping[str, EventHandler],
) -> ReplayResult:
    """Run the handler of the dead letter's group on its message; delete it on success.

    Raises DeadLetterNotFound, ReplayRefused (still retrying on the bus, or no
    handler for its group here) or ReplayFailed (the error is also stored on
    the dead letter, with one more attempt counted).
    """
    async with database.session() as session:
        row = await session.get(dead_letters, dead_letter_id)
        if row is None:
            raise DeadLetterNotFound(dead_letter_id)
        if row.parked_at is None:
            raise ReplayRefused(
                f"dead letter {dead_letter_id} is still being retried by the bus; "
                "replay it once it is parked"
            )
        handler = handlers.get(row.consumer_group)
        if handler is None:
            raise ReplayRefused(
                f"this service has no handler for consumer group {row.consumer_group}"
            )
        body, group, topic = row.body, row.consumer_group, row.topic
        message_id, key, attempts = row.message_id, row.message_key, row.attempts
        properties = dict(row.properties or {})

    try:
        envelope = CloudEvent.from_json(body)
    except InvalidEnvelope as exc:
        await _note_failed_replay(database, dead_letters, dead_letter_id, exc)
        raise ReplayFailed(dead_letter_id, str(exc)) from exc
    event = IncomingEvent(
        envelope=envelope,
        consumer_group=group,
        topic=topic,
        message_id=message_id,
        key=key,
        properties=properties,
        delivery_attempt=attempts + 1,
        replay=True,
    )

    async def clear(session: AsyncSession) -> None:
        await session.execute(
            delete(dead_letters)
            .where(dead_letters.id == dead_letter_id)
            .execution_options(synchronize_session=False)
        )

    try:
        await handle_once(database, inbox, handler, event, on_success=clear)
    except AlreadyHandled:
        # Handled meanwhile (a redelivery, an earlier replay): nothing left to do.
        async with database.session() as session:
            await clear(session)
        logger.info("dead letter %s: event %s was already handled", dead_letter_id, envelope.id)
        return ReplayResult(dead_letter_id, envelope.id, "already_handled")
    except Exception as exc:
        await _note_failed_replay(database, dead_letters, dead_letter_id, exc)
        raise ReplayFailed(dead_letter_id, f"{type(exc).__name__}: {exc}") from exc
    logger.info("dead letter %s: event %s replayed", dead_letter_id, envelope.id)
    return ReplayResult(dead_letter_id, envelope.id, "handled")


async def _note_failed_replay(
    database: Database, model: type[DeadLetterMixin], dead_letter_id: int, exc: BaseException
) -> None:
    try:
        async with database.session() as session:
            row = await session.get(model, dead_letter_id)
            if row is not None:
                row.error = describe_error(exc)
                row.attempts += 1
                row.last_failed_at = datetime.now(UTC)
    except Exception:
        logger.exception("dead letter %s: could not record the failed replay", dead_letter_id)


async def discard_dead_letter(
    database: Database, model: type[DeadLetterMixin], dead_letter_id: int
) -> None:
    """Delete a dead letter without handling it; DeadLetterNotFound when there is none."""
    async with database.session() as session:
        result = await session.execute(
            delete(model)
            .where(model.id == dead_letter_id)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) == 0:
            raise DeadLetterNotFound(dead_letter_id)


# --- HTTP ------------------------------------------------------------------------


class DeadLetterRead(BaseModel):
    """A dead letter as the admin API shows it."""

    id: int
    state: DeadLetterState
    consumer_group: str
    topic: str
    message_id: str
    event_id: str | None
    event_type: str
    message_key: str
    body: str
    properties: dict[str, str]
    error: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    parked_at: datetime | None

    @classmethod
    def from_row(cls, row: DeadLetterMixin) -> DeadLetterRead:
        """The API view of a stored dead letter (the body decoded as UTF-8)."""
        return cls(
            id=row.id,
            state="parked" if row.parked_at is not None else "retrying",
            consumer_group=row.consumer_group,
            topic=row.topic,
            message_id=row.message_id,
            event_id=row.event_id,
            event_type=row.event_type,
            message_key=row.message_key,
            body=bytes(row.body).decode("utf-8", errors="replace"),
            properties={str(k): str(v) for k, v in (row.properties or {}).items()},
            error=row.error,
            attempts=row.attempts,
            first_failed_at=row.first_failed_at,
            last_failed_at=row.last_failed_at,
            parked_at=row.parked_at,
        )


class ReplayRead(BaseModel):
    """The result of a successful replay."""

    id: int
    event_id: str
    outcome: ReplayOutcome


DeadLetterId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="dead letter id")]


def dead_letter_router(
    *,
    dead_letters: type[DeadLetterMixin],
    inbox: type[InboxMixin],
    consumers: Sequence[ConsumerSpec],
    prefix: str = "/admin/dead-letters",
) -> APIRouter:
    """Admin routes to list, replay and discard dead letters (mount under /api/v1)."""
    handlers = {spec.group.name: spec.handler for spec in consumers}
    router = APIRouter(prefix=prefix, tags=["dead letters"])
    problems: dict[int | str, dict[str, str]] = {
        401: {"description": "No valid access token (problem+json)"},
        403: {"description": "The caller is not an admin (problem+json)"},
    }

    @router.get("", responses=problems)
    async def list_dead_letters_route(
        _admin: AdminUser,
        session: ReadSessionDep,
        page: PageDep,
        state: Annotated[
            DeadLetterState,
            Query(description="parked (waiting for an operator) or retrying (on the bus)"),
        ] = "parked",
        consumer_group: Annotated[str | None, Query(max_length=128)] = None,
    ) -> Page[DeadLetterRead]:
        """List dead letters of this service's consumers (admins only)."""
        rows, total = await list_dead_letters(
            session,
            dead_letters,
            state=state,
            consumer_group=consumer_group,
            offset=page.offset,
            limit=page.page_size,
        )
        return Page[DeadLetterRead](
            items=[DeadLetterRead.from_row(row) for row in rows],
            total=total,
            page=page.page,
            page_size=page.page_size,
        )

    @router.post(
        "/{dead_letter_id}/replay",
        responses={
            **problems,
            404: {"description": "No such dead letter (problem+json)"},
            409: {"description": "The replay failed again or is not possible (problem+json)"},
        },
    )
    async def replay_dead_letter_route(
        dead_letter_id: DeadLetterId, _admin: AdminUser, database: DatabaseDep
    ) -> ReplayRead:
        """Handle a parked message again; on success the dead letter is deleted (admins only)."""
        try:
            result = await replay_dead_letter(
                database,
                dead_letter_id,
                dead_letters=dead_letters,
                inbox=inbox,
                handlers=handlers,
            )
        except DeadLetterNotFound:
            raise NotFound(f"Dead letter {dead_letter_id} does not exist.") from None
        except ReplayRefused as exc:
            raise Conflict(str(exc)) from None
        except ReplayFailed as exc:
            raise Conflict(
                f"Replaying dead letter {dead_letter_id} failed again: {exc.error}"
            ) from None
        return ReplayRead(
            id=result.dead_letter_id, event_id=result.event_id, outcome=result.outcome
        )

    @router.delete(
        "/{dead_letter_id}",
        status_code=204,
        responses={**problems, 404: {"description": "No such dead letter (problem+json)"}},
    )
    async def discard_dead_letter_route(
        dead_letter_id: DeadLetterId, _admin: AdminUser, database: DatabaseDep
    ) -> None:
        """Drop a dead letter without handling it (admins only)."""
        try:
            await discard_dead_letter(database, dead_letters, dead_letter_id)
        except DeadLetterNotFound:
            raise NotFound(f"Dead letter {dead_letter_id} does not exist.") from None

    return router
