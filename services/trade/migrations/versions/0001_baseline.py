"""Baseline of the trade service: no tables yet (its business API comes with the checkout saga).

Revision ID: 0001_trade_baseline
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0001_trade_baseline"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
