"""The audit log: audit_entries, one row per audit.recorded event.

Revision ID: 0004_data_audit
Revises: 0003_data_messaging
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004_data_audit"
down_revision: str | None = "0003_data_messaging"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp() -> sa.types.TypeEngine[object]:
    # Microseconds on MySQL/MariaDB, whose plain DATETIME drops them.
    return (
        sa.DateTime(timezone=True)
        .with_variant(mysql.DATETIME(fsp=6), "mariadb")
        .with_variant(mysql.DATETIME(fsp=6), "mysql")
    )


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("occurred_at", _timestamp(), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_email", sa.String(length=254), nullable=True),
        sa.Column("actor_role", sa.String(length=16), nullable=True),
        sa.Column("target_type", sa.String(length=32), nullable=True),
        sa.Column("target_id", sa.String(length=128), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_entries_event_id")),
    )
    op.create_index(
        "ix_audit_entries_occurred_at_id", "audit_entries", ["occurred_at", "id"], unique=False
    )
    op.create_index(
        "ix_audit_entries_actor_id_occurred_at",
        "audit_entries",
        ["actor_id", "occurred_at"],
        unique=False,
    )
    op.create_index(
        "ix_audit_entries_actor_email_occurred_at",
        "audit_entries",
        ["actor_email", "occurred_at"],
        unique=False,
    )
    op.create_index(
        "ix_audit_entries_action_occurred_at",
        "audit_entries",
        ["action", "occurred_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_audit_entries_action_occurred_at", table_name="audit_entries")
    op.drop_index("ix_audit_entries_actor_email_occurred_at", table_name="audit_entries")
    op.drop_index("ix_audit_entries_actor_id_occurred_at", table_name="audit_entries")
    op.drop_index("ix_audit_entries_occurred_at_id", table_name="audit_entries")
    op.drop_table("audit_entries")
