"""Table mixins for the outbox, the inbox and dead letters.

Each service has its own DeclarativeBase and migrations, so the library ships
mixins rather than tables; a service declares::

    class OutboxEvent(OutboxMixin, Base): pass
    class InboxEvent(InboxMixin, Base): pass
    class DeadLetter(DeadLetterMixin, Base): pass

and its Alembic autogenerate picks the three tables up like any other.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, declared_attr, mapped_column
from sqlalchemy.types import TypeDecorator

from meshmart_common.db import UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY; MySQL gets a BIGINT so the
# outbox id never runs out.
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")
# MySQL's TEXT and BLOB stop at 64 KiB; an event body or a traceback may not.
LONG_TEXT = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def _instant() -> UTCDateTime:
    """The library tables' timestamp type: naive values are refused, whole seconds on MySQL."""
    return UTCDateTime(precision=0, naive="reject")


class MessageBody(TypeDecorator[bytes]):
    """A message body (bytes) kept as text: UTF-8 as is, anything else as ``base64:...``.

    Bodies are JSON envelopes, so they stay readable in the table; the rare
    body that is not UTF-8 (why it was dead-lettered) survives byte for byte.
    Text also sidesteps binary parameters, which aiomysql cannot send with
    PyMySQL >= 1.2.
    """

    impl = LONG_TEXT
    cache_ok = True
    PREFIX = "base64:"

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or text.startswith(self.PREFIX):
            return self.PREFIX + base64.b64encode(value).decode("ascii")
        return text

    def process_result_value(self, value: Any | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        text = str(value)
        if text.startswith(self.PREFIX):
            return base64.b64decode(text[len(self.PREFIX) :])
        return text.encode("utf-8")


class OutboxMixin:
    """An event written in the transaction of the change it describes, published later.

    ``sent_at`` is NULL until the relay has handed the message to the bus;
    ``claimed_by``/``claimed_until`` mark the relay replica publishing it now.
    """

    if TYPE_CHECKING:
        # The DeclarativeBase of the concrete class supplies the keyword
        # constructor; this tells the type checker so.
        def __init__(self, **kwargs: Any) -> None: ...

    __tablename__ = "outbox_events"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    topic: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(100))
    message_key: Mapped[str] = mapped_column(String(191))
    body: Mapped[str] = mapped_column(LONG_TEXT)
    properties: Mapped[dict[str, str]] = mapped_column(JSON)
    deliver_at: Mapped[datetime | None] = mapped_column(_instant())
    created_at: Mapped[datetime] = mapped_column(_instant())
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(_instant())
    sent_at: Mapped[datetime | None] = mapped_column(_instant())
    message_id: Mapped[str | None] = mapped_column(String(128))

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        # The relay's query is "unsent rows by id"; pruning is "sent before t".
        return (Index(f"ix_{cls.__tablename__}_sent_at_id", "sent_at", "id"),)


class InboxMixin:
    """An event a consumer group has handled; the unique key makes redeliveries no-ops."""

    if TYPE_CHECKING:
        # The DeclarativeBase of the concrete class supplies the keyword
        # constructor; this tells the type checker so.
        def __init__(self, **kwargs: Any) -> None: ...

    __tablename__ = "inbox_events"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    consumer_group: Mapped[str] = mapped_column(String(128))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(100))
    handled_at: Mapped[datetime] = mapped_column(_instant())

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (
            UniqueConstraint("consumer_group", "event_id"),
            Index(f"ix_{cls.__tablename__}_handled_at", "handled_at"),
        )


class DeadLetterMixin:
    """A message whose handler failed: retrying (``parked_at`` NULL) or parked for an operator.

    The row is written at the first failure and updated at each further one,
    so it records when the trouble started; it is parked once the delivery
    attempts reach the maximum (or at once for a message that cannot succeed),
    and deleted when the event is finally handled.
    """

    if TYPE_CHECKING:
        # The DeclarativeBase of the concrete class supplies the keyword
        # constructor; this tells the type checker so.
        def __init__(self, **kwargs: Any) -> None: ...

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    consumer_group: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(100))
    message_id: Mapped[str] = mapped_column(String(128))
    event_id: Mapped[str | None] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(100))
    message_key: Mapped[str] = mapped_column(String(191))
    body: Mapped[bytes] = mapped_column(MessageBody())
    properties: Mapped[dict[str, str]] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(LONG_TEXT)
    attempts: Mapped[int] = mapped_column(Integer)
    first_failed_at: Mapped[datetime] = mapped_column(_instant())
    last_failed_at: Mapped[datetime] = mapped_column(_instant())
    parked_at: Mapped[datetime | None] = mapped_column(_instant())

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        # One row per (group, message): a redelivery of a parked message whose
        # ack was lost updates the row instead of parking a second copy.
        return (
            UniqueConstraint("consumer_group", "message_id"),
            Index(f"ix_{cls.__tablename__}_parked_at_id", "parked_at", "id"),
        )
