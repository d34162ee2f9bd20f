"""Run a request again when its transaction lost a lock race, instead of answering 500.

MySQL/MariaDB roll a transaction back when it deadlocks (error 1213) or waits
too long for a lock (1205) and ask the client to try again; SQLite answers
``database is locked`` when its busy timeout runs out. Either way nothing of
the request's unit of work was kept (the request session rolls back on any
error), so running the whole request again is safe and is what the engines
recommend. :class:`TransactionRetryMiddleware` does this for every route:
up to ``attempts`` times with a short jittered backoff, replaying the body
the first attempt read; when the last attempt loses too, the caller gets a
503 problem+json with Retry-After instead of a 500.

A request is only run again when nothing of its response has been sent, so
a client never sees two answers. Calls to other services made before the
failure are made again, which is why only the write routes' own database
work may have effects there: MeshMart's calls between services during a
request are reads (product look-ups, trade quotes), and everything else
travels through the transactional outbox.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3

from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meshmart_common.errors import problem_response

logger = logging.getLogger(__name__)

MYSQL_DEADLOCK = 1213
MYSQL_LOCK_WAIT_TIMEOUT = 1205
_SQLITE_BUSY = 5  # SQLITE_BUSY and its extended codes (BUSY_SNAPSHOT, ...) share the low byte


def is_lock_conflict(error: BaseException) -> bool:
    """True when ``error`` is a transaction that lost a lock race and may simply be retried."""
    if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        return is_lock_conflict(error.exceptions[0])
    if not isinstance(error, DBAPIError):
        return False
    original = error.orig
    if isinstance(original, sqlite3.OperationalError):
        code = getattr(original, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code & 0xFF == _SQLITE_BUSY
        return "database is locked" in str(original)
    args: tuple[object, ...] = tuple(getattr(original, "args", ()))
    return len(args) > 0 and args[0] in (MYSQL_DEADLOCK, MYSQL_LOCK_WAIT_TIMEOUT)


class TransactionRetryMiddleware:
    """ASGI middleware: run a request again after a lock conflict, 503 after the last one."""

    def __init__(self, app: ASGIApp, *, attempts: int = 4, backoff_seconds: float = 0.02) -> None:
        self.app = app
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        original_keys = set(scope)
        original_state = dict(scope.get("state", {}))
        received: list[Message] = []
        started = False

        async def recording_receive() -> Message:
            message = await receive()
            received.append(message)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        attempt = 1
        while True:
            replay = list(received)

            async def attempt_receive(replay: list[Message] = replay) -> Message:
                if replay:
                    return replay.pop(0)
                return await recording_receive()

            try:
                await self.app(scope, attempt_receive, tracking_send)
                return
            except Exception as error:
                if started or not is_lock_conflict(error):
                    raise
                if attempt >= self.attempts:
                    logger.warning(
                        "%s %s lost %d lock races in a row; answering 503",
                        scope.get("method"),
                        scope.get("path"),
                        attempt,
                    )
                    await self._busy(scope, send)
                    return
                logger.info(
                    "%s %s lost a lock race (attempt %d): %s; running it again",
                    scope.get("method"),
                    scope.get("path"),
                    attempt,
                    getattr(error, "orig", error),
                )
            # What routing and the dependencies added to the scope belongs to the lost attempt.
            for key in set(scope) - original_keys:
                del scope[key]
            if "state" in scope:
                scope["state"] = dict(original_state)
            await asyncio.sleep(
                self.backoff_seconds * (2 ** (attempt - 1)) * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not a secret
            )
            attempt += 1

    async def _busy(self, scope: Scope, send: Send) -> None:
        request_id = scope.get("state", {}).get("request_id")
        response = problem_response(
            503,
            title="Service Unavailable",
            detail="The database stayed too busy to finish this request; try again shortly.",
            code="database-busy",
            instance=scope.get("path"),
            headers={"Retry-After": "1"},
            extra={"request_id": request_id if isinstance(request_id, str) else None},
        )

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)
