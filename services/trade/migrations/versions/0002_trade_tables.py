"""Trade tables: coupon campaigns, coupons, points accounts and history, per-order holds.

Revision ID: 0002_trade_tables
Revises: 0001_trade_baseline
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002_trade_tables"
down_revision: str | None = "0001_trade_baseline"
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
        "coupon_campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("discount_type", sa.String(length=16), nullable=False),
        sa.Column("discount_value", sa.Integer(), nullable=False),
        sa.Column("min_spend_cents", sa.BigInteger(), nullable=False),
        sa.Column("total_quantity", sa.Integer(), nullable=False),
        sa.Column("per_user_limit", sa.Integer(), nullable=False),
        sa.Column("claimed_count", sa.Integer(), nullable=False),
        sa.Column("used_count", sa.Integer(), nullable=False),
        sa.Column("starts_at", _timestamp(), nullable=False),
        sa.Column("ends_at", _timestamp(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.CheckConstraint(
            "discount_type IN ('fixed', 'percent')",
            name=op.f("ck_coupon_campaigns_discount_type_known"),
        ),
        sa.CheckConstraint(
            "discount_value > 0", name=op.f("ck_coupon_campaigns_discount_value_positive")
        ),
        sa.CheckConstraint(
            "min_spend_cents >= 0", name=op.f("ck_coupon_campaigns_min_spend_not_negative")
        ),
        sa.CheckConstraint(
            "total_quantity > 0", name=op.f("ck_coupon_campaigns_total_quantity_positive")
        ),
        sa.CheckConstraint(
            "per_user_limit > 0", name=op.f("ck_coupon_campaigns_per_user_limit_positive")
        ),
        sa.CheckConstraint(
            "claimed_count >= 0 AND claimed_count <= total_quantity",
            name=op.f("ck_coupon_campaigns_claimed_in_range"),
        ),
        sa.CheckConstraint(
            "used_count >= 0 AND used_count <= claimed_count",
            name=op.f("ck_coupon_campaigns_used_in_range"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_campaigns")),
        sa.UniqueConstraint("code", name=op.f("uq_coupon_campaigns_code")),
    )
    op.create_index(
        op.f("ix_coupon_campaigns_created_at"), "coupon_campaigns", ["created_at"], unique=False
    )

    op.create_table(
        "coupons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("claim_number", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("claimed_at", _timestamp(), nullable=False),
        sa.Column("used_at", _timestamp(), nullable=True),
        sa.CheckConstraint(
            "status IN ('available', 'locked', 'used', 'expired')",
            name=op.f("ck_coupons_status_known"),
        ),
        sa.CheckConstraint("claim_number > 0", name=op.f("ck_coupons_claim_number_positive")),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["coupon_campaigns.id"],
            name=op.f("fk_coupons_campaign_id_coupon_campaigns"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
        sa.UniqueConstraint(
            "campaign_id",
            "user_id",
            "claim_number",
            name=op.f("uq_coupons_campaign_id_user_id_claim_number"),
        ),
    )
    op.create_index(op.f("ix_coupons_order_id"), "coupons", ["order_id"], unique=False)
    op.create_index("ix_coupons_user_id_status", "coupons", ["user_id", "status"], unique=False)

    op.create_table(
        "points_accounts",
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("locked", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_points_accounts_balance_not_negative")),
        sa.CheckConstraint(
            "locked >= 0 AND locked <= balance", name=op.f("ck_points_accounts_locked_in_range")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_points_accounts")),
    )

    op.create_table(
        "points_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.CheckConstraint(
            "reason IN ('earned', 'redeemed', 'refunded', 'locked', 'released', 'adjusted')",
            name=op.f("ck_points_entries_reason_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_points_entries")),
    )
    op.create_index(
        op.f("ix_points_entries_order_id"), "points_entries", ["order_id"], unique=False
    )
    op.create_index(
        "ix_points_entries_user_id_created_at",
        "points_entries",
        ["user_id", "created_at"],
        unique=False,
    )

    op.create_table(
        "trade_holds",
        sa.Column("order_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("coupon_id", sa.Integer(), nullable=True),
        sa.Column("coupon_code", sa.String(length=32), nullable=True),
        sa.Column("discount_cents", sa.BigInteger(), nullable=False),
        sa.Column("points_locked", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'locked', 'rejected', 'consumed', 'released', 'void')",
            name=op.f("ck_trade_holds_status_known"),
        ),
        sa.CheckConstraint(
            "discount_cents >= 0", name=op.f("ck_trade_holds_discount_not_negative")
        ),
        sa.CheckConstraint(
            "points_locked >= 0", name=op.f("ck_trade_holds_points_locked_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["coupon_id"],
            ["coupons.id"],
            name=op.f("fk_trade_holds_coupon_id_coupons"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_trade_holds")),
    )
    op.create_index(op.f("ix_trade_holds_coupon_id"), "trade_holds", ["coupon_id"], unique=False)
    op.create_index(op.f("ix_trade_holds_user_id"), "trade_holds", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_table("trade_holds")
    op.drop_table("points_entries")
    op.drop_table("points_accounts")
    op.drop_table("coupons")
    op.drop_table("coupon_campaigns")
