"""Events and the checkout saga: outbox, inbox, dead letters, stock reservations, purchases.

Revision ID: 0002_product_events
Revises: 0001_product_initial
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002_product_events"
down_revision: str | None = "0001_product_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp() -> sa.types.TypeEngine[object]:
    # The service's own tables: microseconds on MySQL/MariaDB (DATETIME(6)).
    return (
        sa.DateTime(timezone=True)
        .with_variant(mysql.DATETIME(fsp=6), "mariadb")
        .with_variant(mysql.DATETIME(fsp=6), "mysql")
    )


def _messaging_timestamp() -> sa.types.TypeEngine[object]:
    # meshmart_common.messaging.models declares plain DATETIME columns.
    return sa.DateTime(timezone=True)


def _big_id() -> sa.types.TypeEngine[int]:
    # SQLite only auto-increments an INTEGER PRIMARY KEY.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _long_text() -> sa.types.TypeEngine[str]:
    # MySQL's TEXT stops at 64 KiB; event bodies and tracebacks may not.
    return (
        sa.Text()
        .with_variant(mysql.MEDIUMTEXT(), "mysql")
        .with_variant(mysql.MEDIUMTEXT(), "mariadb")
    )


def upgrade() -> None:
    op.create_table(
        "stock_reservations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_stock_reservations_quantity_positive")),
        sa.CheckConstraint(
            "state IN ('reserved', 'released', 'committed')",
            name=op.f("ck_stock_reservations_state_known"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_stock_reservations_product_id_products"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_reservations")),
        sa.UniqueConstraint(
            "order_id", "product_id", name=op.f("uq_stock_reservations_order_id_product_id")
        ),
    )
    op.create_index(op.f("ix_stock_reservations_product_id"), "stock_reservations", ["product_id"])

    op.create_table(
        "purchases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_purchases_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchases")),
        sa.UniqueConstraint("user_id", "product_id", name=op.f("uq_purchases_user_id_product_id")),
    )
    op.create_index(op.f("ix_purchases_product_id"), "purchases", ["product_id"])

    op.create_table(
        "outbox_events",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("message_key", sa.String(length=191), nullable=False),
        sa.Column("body", _long_text(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("deliver_at", _messaging_timestamp(), nullable=True),
        sa.Column("created_at", _messaging_timestamp(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", _messaging_timestamp(), nullable=True),
        sa.Column("sent_at", _messaging_timestamp(), nullable=True),
        sa.Column("message_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_events_event_id")),
    )
    op.create_index("ix_outbox_events_sent_at_id", "outbox_events", ["sent_at", "id"])

    op.create_table(
        "inbox_events",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("consumer_group", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("handled_at", _messaging_timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_events")),
        sa.UniqueConstraint(
            "consumer_group", "event_id", name=op.f("uq_inbox_events_consumer_group_event_id")
        ),
    )
    op.create_index("ix_inbox_events_handled_at", "inbox_events", ["handled_at"])

    op.create_table(
        "dead_letters",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("consumer_group", sa.String(length=128), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("message_key", sa.String(length=191), nullable=False),
        sa.Column("body", _long_text(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("error", _long_text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", _messaging_timestamp(), nullable=False),
        sa.Column("last_failed_at", _messaging_timestamp(), nullable=False),
        sa.Column("parked_at", _messaging_timestamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint(
            "consumer_group",
            "message_id",
            name=op.f("uq_dead_letters_consumer_group_message_id"),
        ),
    )
    op.create_index("ix_dead_letters_parked_at_id", "dead_letters", ["parked_at", "id"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("inbox_events")
    op.drop_table("outbox_events")
    op.drop_table("purchases")
    op.drop_table("stock_reservations")
