"""Points: a per-user balance with a locked part, and the history that explains it.

``balance`` counts every point the user owns, ``locked`` the part held for
orders that are not paid yet, and ``available = balance - locked``. Each
history entry's ``delta`` is the change in available points, so:

- available points are the sum of every delta;
- the balance is the sum of the ``earned``, ``redeemed`` and ``adjusted`` deltas;
- the locked points are minus the sum of the ``locked``, ``released`` and
  ``refunded`` deltas.

Paying an order therefore writes ``released`` (+n, the hold is lifted) and
``redeemed`` (-n, the points are spent) for its points, then ``earned``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.db import utc_now
from meshmart_common.events import PointsChanged
from trade_service.repository.models import PointsAccount, PointsEntry, PointsReason
from trade_service.repository.points import PointsRepository

BALANCE_REASONS = frozenset({PointsReason.EARNED, PointsReason.REDEEMED, PointsReason.ADJUSTED})
"""Entries that move the balance (and are published as points.changed)."""
HOLD_REASONS = frozenset({PointsReason.LOCKED, PointsReason.RELEASED, PointsReason.REFUNDED})
"""Entries that move the locked part only."""


class LedgerInconsistent(RuntimeError):
    """The counters do not hold what the trade holds say they should (a bug, never user input)."""


@dataclass(frozen=True, slots=True)
class PointsBalance:
    """A user's points counters."""

    user_id: int
    balance: int
    locked: int

    @property
    def available(self) -> int:
        """Points that can be redeemed now."""
        return self.balance - self.locked

    @classmethod
    def of(cls, user_id: int, account: PointsAccount | None) -> PointsBalance:
        """The counters of ``account`` (zeros before the user's first points)."""
        if account is None:
            return cls(user_id=user_id, balance=0, locked=0)
        return cls(user_id=user_id, balance=account.balance, locked=account.locked)


@dataclass(frozen=True, slots=True)
class Granted:
    """The balance after a grant, and the event to publish."""

    balance: PointsBalance
    event: PointsChanged


class PointsService:
    """Reads balances and history; grants, locks, releases, redeems and awards points."""

    def __init__(self, session: AsyncSession, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.points = PointsRepository(session)
        self.clock = clock

    async def balance(self, user_id: int) -> PointsBalance:
        """The user's counters (zeros before their first points)."""
        return PointsBalance.of(user_id, await self.points.get_account(user_id))

    async def history(
        self, user_id: int, *, offset: int, limit: int
    ) -> tuple[Sequence[PointsEntry], int]:
        """One page of the user's history, newest first, and how many entries there are."""
        return await self.points.history(user_id, offset=offset, limit=limit)

    async def grant(self, user_id: int, points: int, note: str | None = None) -> Granted:
        """Add ``points`` to the user's balance (an ``adjusted`` entry)."""
        event = await self.credit(user_id, points, PointsReason.ADJUSTED, note=note)
        return Granted(balance=await self.balance(user_id), event=event)

    async def credit(
        self,
        user_id: int,
        points: int,
        reason: PointsReason,
        *,
        order_id: int | None = None,
        note: str | None = None,
    ) -> PointsChanged:
        """Add ``points`` (> 0) to the balance for ``reason`` (earned or adjusted)."""
        now = self.clock()
        await self.points.ensure_account(user_id, now=now)
        if not await self.points.credit(user_id, points, now=now):
            raise LedgerInconsistent(f"the points account of user {user_id} is missing")
        await self._record(user_id, points, reason, order_id=order_id, note=note, now=now)
        return await self._changed(user_id, points, reason, order_id=order_id)

    async def lock(self, user_id: int, points: int, *, order_id: int) -> bool:
        """Hold ``points`` for an order; False (nothing held) when fewer are available."""
        now = self.clock()
        if not await self.points.lock(user_id, points, now=now):
            return False
        await self._record(user_id, -points, PointsReason.LOCKED, order_id=order_id, now=now)
        return True

    async def unlock(self, user_id: int, points: int, *, order_id: int, refund: bool) -> None:
        """Lift an order's hold: ``refunded`` for a cancelled order, else ``released``."""
        now = self.clock()
        if not await self.points.release(user_id, points, now=now):
            raise LedgerInconsistent(f"user {user_id} has fewer than {points} points locked")
        reason = PointsReason.REFUNDED if refund else PointsReason.RELEASED
        await self._record(user_id, points, reason, order_id=order_id, now=now)

    async def redeem(self, user_id: int, points: int, *, order_id: int) -> PointsChanged:
        """Spend points locked for a paid order: the hold is lifted and the balance drops."""
        now = self.clock()
        if not await self.points.redeem_locked(user_id, points, now=now):
            raise LedgerInconsistent(f"user {user_id} has fewer than {points} points locked")
        await self._record(user_id, points, PointsReason.RELEASED, order_id=order_id, now=now)
        await self._record(user_id, -points, PointsReason.REDEEMED, order_id=order_id, now=now)
        return await self._changed(user_id, -points, PointsReason.REDEEMED, order_id=order_id)

    async def has_entry(self, user_id: int, *, reason: PointsReason, note: str) -> bool:
        """True when the user has an entry with ``reason`` and ``note``."""
        return await self.points.has_entry(user_id, reason=reason.value, note=note)

    async def _record(
        self,
        user_id: int,
        delta: int,
        reason: PointsReason,
        *,
        order_id: int | None = None,
        note: str | None = None,
        now: datetime,
    ) -> None:
        await self.points.add_entry(
            PointsEntry(
                user_id=user_id,
                delta=delta,
                reason=reason.value,
                order_id=order_id,
                note=note,
                created_at=now,
            )
        )

    async def _changed(
        self, user_id: int, delta: int, reason: PointsReason, *, order_id: int | None
    ) -> PointsChanged:
        account = await self.points.get_account(user_id)
        return PointsChanged(
            user_id=user_id,
            delta=delta,
            balance=account.balance if account is not None else 0,
            reason=reason.value,
            order_id=order_id,
        )
