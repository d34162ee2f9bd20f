"""Business counters of the order service, counted once per committed status change.

Every status change that matters here emits exactly one event through the
EventSink, in the transaction of the change (order.created, order.paid,
order.rejected, order.cancelled). :class:`OrderMetrics` notes the event when it
is emitted and counts it only once that transaction has committed: a change
that rolls back counts nothing, and a redelivered saga reply or a retried
checkout makes no change, emits nothing and so counts nothing.

Series (per process; Prometheus sums the replicas, e.g. ``sum(rate(...))``):

- ``orders_created_total``: orders stored at checkout;
- ``orders_paid_total``: orders paid;
- ``orders_rejected_total``: orders that stock or trade refused;
- ``orders_cancelled_total{reason}``: cancelled orders, ``reason`` one of
  ``cancelled_by_customer``, ``cancelled_by_admin``, ``payment_timeout``
  (anything else would show as ``other``);
- ``gmv_cents_total``: the sum of the totals of paid orders, in cents.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from meshmart_common.events import EventData, OrderCancelled, OrderCreated, OrderPaid, OrderRejected
from order_service.domain.orders import CANCELLED_BY_ADMIN, CANCELLED_BY_CUSTOMER, PAYMENT_TIMEOUT

CANCEL_REASONS = (CANCELLED_BY_CUSTOMER, CANCELLED_BY_ADMIN, PAYMENT_TIMEOUT)
"""The ``reason`` label values of orders_cancelled_total (plus ``other``)."""
OTHER_REASON = "other"

_PENDING_KEY = "order.metrics.pending"


class OrderMetrics:
    """The order business counters; created unexported, shown once :meth:`export_to` ran."""

    def __init__(self) -> None:
        # registry=None: not in prometheus_client's global registry; each app
        # exports its own (tests build many apps in one process).
        self.created = Counter(
            "orders_created", "Orders placed (stored PENDING at checkout).", registry=None
        )
        self.paid = Counter("orders_paid", "Orders paid.", registry=None)
        self.rejected = Counter(
            "orders_rejected", "Orders rejected by stock or trade.", registry=None
        )
        self.cancelled = Counter(
            "orders_cancelled", "Orders cancelled, by reason.", ["reason"], registry=None
        )
        self.gmv_cents = Counter(
            "gmv_cents", "Gross merchandise value: sum of paid order totals.", registry=None
        )
        for reason in (*CANCEL_REASONS, OTHER_REASON):
            self.cancelled.labels(reason)

    def export_to(self, registry: CollectorRegistry) -> None:
        """Serve the counters from ``registry`` (the app's, at /metrics)."""
        for counter in (self.created, self.paid, self.rejected, self.cancelled, self.gmv_cents):
            registry.register(counter)

    def count_after_commit(self, session: AsyncSession, payload: EventData) -> None:
        """Count ``payload``'s change once ``session``'s transaction commits (never on rollback)."""
        if not isinstance(payload, OrderCreated | OrderPaid | OrderRejected | OrderCancelled):
            return
        sync_session = session.sync_session
        pending: list[EventData] | None = sync_session.info.get(_PENDING_KEY)
        if pending is None:
            pending = sync_session.info[_PENDING_KEY] = []
            event.listen(sync_session, "after_commit", self._count_pending)
            event.listen(sync_session, "after_transaction_end", _forget_uncommitted)
        pending.append(payload)

    def _count_pending(self, session: Session) -> None:
        pending: list[EventData] = session.info.get(_PENDING_KEY, [])
        for payload in pending:
            self._count(payload)
        pending.clear()

    def _count(self, payload: EventData) -> None:
        if isinstance(payload, OrderCreated):
            self.created.inc()
        elif isinstance(payload, OrderPaid):
            self.paid.inc()
            self.gmv_cents.inc(payload.total_cents)
        elif isinstance(payload, OrderRejected):
            self.rejected.inc()
        elif isinstance(payload, OrderCancelled):
            reason = payload.reason if payload.reason in CANCEL_REASONS else OTHER_REASON
            self.cancelled.labels(reason).inc()


def _forget_uncommitted(session: Session, transaction: SessionTransaction) -> None:
    # A committed transaction was counted by after_commit, which runs first; at
    # the end of any other outermost transaction (a rollback) the notes go.
    if transaction.parent is None:
        session.info.get(_PENDING_KEY, []).clear()
