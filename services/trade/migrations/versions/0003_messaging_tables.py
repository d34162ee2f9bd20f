"""Messaging tables: the outbox, the inbox of handled order events, dead letters.

The columns follow meshmart_common.messaging.models (OutboxMixin, InboxMixin,
DeadLetterMixin): BIGINT ids (INTEGER on SQLite, whose only auto-increment
key it is), MEDIUMTEXT bodies and errors on MySQL/MariaDB (TEXT stops at
64 KiB), and UTC DATETIME columns.

Revision ID: 0003_messaging_tables
Revises: 0002_trade_tables
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003_messaging_tables"
down_revision: str | None = "0002_trade_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _long_text() -> sa.types.TypeEngine[str]:
    return (
        sa.Text()
        .with_variant(mysql.MEDIUMTEXT(), "mariadb")
        .with_variant(mysql.MEDIUMTEXT(), "mysql")
    )


def _instant() -> sa.types.TypeEngine[object]:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("message_key", sa.String(length=191), nullable=False),
        sa.Column("body", _long_text(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("deliver_at", _instant(), nullable=True),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", _instant(), nullable=True),
        sa.Column("sent_at", _instant(), nullable=True),
        sa.Column("message_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_events_event_id")),
    )
    op.create_index("ix_outbox_events_sent_at_id", "outbox_events", ["sent_at", "id"])

    op.create_table(
        "inbox_events",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("consumer_group", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("handled_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_events")),
        sa.UniqueConstraint(
            "consumer_group", "event_id", name=op.f("uq_inbox_events_consumer_group_event_id")
        ),
    )
    op.create_index("ix_inbox_events_handled_at", "inbox_events", ["handled_at"])

    op.create_table(
        "dead_letters",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("consumer_group", sa.String(length=128), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("message_key", sa.String(length=191), nullable=False),
        # Message bodies are stored as text (UTF-8, or "base64:..." for anything else).
        sa.Column("body", _long_text(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("error", _long_text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", _instant(), nullable=False),
        sa.Column("last_failed_at", _instant(), nullable=False),
        sa.Column("parked_at", _instant(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint(
            "consumer_group", "message_id", name=op.f("uq_dead_letters_consumer_group_message_id")
        ),
    )
    op.create_index("ix_dead_letters_parked_at_id", "dead_letters", ["parked_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_parked_at_id", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_index("ix_inbox_events_handled_at", table_name="inbox_events")
    op.drop_table("inbox_events")
    op.drop_index("ix_outbox_events_sent_at_id", table_name="outbox_events")
    op.drop_table("outbox_events")
