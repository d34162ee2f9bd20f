"""The consumers' inbox (handled events) and dead letters (failed and parked events).

Revision ID: 0003_data_messaging
Revises: 0002_data_analytics
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003_data_messaging"
down_revision: str | None = "0002_data_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The shapes of meshmart_common.messaging.models: BIGINT ids (SQLite only
# auto-increments an INTEGER primary key), MEDIUMTEXT bodies and errors on
# MySQL/MariaDB (TEXT stops at 64 KiB), UTC instants stored without offset.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "inbox_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("consumer_group", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_events")),
        sa.UniqueConstraint(
            "consumer_group", "event_id", name=op.f("uq_inbox_events_consumer_group_event_id")
        ),
    )
    op.create_index("ix_inbox_events_handled_at", "inbox_events", ["handled_at"], unique=False)

    op.create_table(
        "dead_letters",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("consumer_group", sa.String(length=128), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("message_key", sa.String(length=191), nullable=False),
        sa.Column("body", LONG_TEXT, nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("error", LONG_TEXT, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint(
            "consumer_group", "message_id", name=op.f("uq_dead_letters_consumer_group_message_id")
        ),
    )
    op.create_index(
        "ix_dead_letters_parked_at_id", "dead_letters", ["parked_at", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_dead_letters_parked_at_id", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_index("ix_inbox_events_handled_at", table_name="inbox_events")
    op.drop_table("inbox_events")
