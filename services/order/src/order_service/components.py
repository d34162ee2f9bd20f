"""The long-lived parts of one order app, shared by the routes and the event handlers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from order_service.domain.clock import Clock
from order_service.domain.outbox_port import EventSink
from order_service.gateways.upstreams import Upstreams
from order_service.settings import Settings


@dataclass(slots=True)
class Components:
    """What ``app.state.components`` holds.

    ``event_sink`` is the port to the transactional outbox; ``upstreams`` the
    REST clients of product and trade (tests swap in stubs here).
    """

    settings: Settings
    clock: Clock
    event_sink: EventSink
    upstreams: Upstreams

    @property
    def payment_timeout(self) -> timedelta:
        """How long a customer has to pay once stock and trade hold."""
        return timedelta(seconds=self.settings.payment_timeout_seconds)
