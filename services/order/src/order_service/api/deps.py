"""Dependencies of the order API: shared components, gateways, domain services, the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.auth import CurrentUser
from meshmart_common.db import ReadSessionDep, SessionDep
from meshmart_common.errors import problem_responses
from meshmart_common.service_client import Caller
from order_service.api.schemas import MAX_ID
from order_service.components import Components
from order_service.domain.cart import CartService
from order_service.domain.checkout import CheckoutService
from order_service.domain.orders import Actor, OrderService
from order_service.domain.outbox_port import EventSink, OutgoingEvent, emit_all
from order_service.gateways.product import ProductGateway
from order_service.gateways.trade import TradeGateway

ProductId = Annotated[int, Path(ge=1, le=MAX_ID, description="product id")]
OrderId = Annotated[int, Path(ge=1, le=MAX_ID, description="order id")]


async def get_components(request: Request) -> Components:
    """The app's shared components."""
    components: Components = request.app.state.components
    return components


ComponentsDep = Annotated[Components, Depends(get_components)]


async def get_actor(principal: CurrentUser) -> Actor:
    """The verified caller as the domain sees it."""
    return Actor(user_id=principal.user_id, is_admin=principal.is_admin)


ActorDep = Annotated[Actor, Depends(get_actor)]


async def get_caller(_principal: CurrentUser, request: Request) -> Caller:
    """Whom calls to other services are made for: the verified token and the request id."""
    return Caller.of_request(request)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def _catalogue(components: ComponentsDep, caller: CallerDep) -> ProductGateway:
    return ProductGateway(components.upstreams.product, caller)


async def _quotes(components: ComponentsDep, caller: CallerDep) -> TradeGateway:
    return TradeGateway(components.upstreams.trade, caller)


CatalogueDep = Annotated[ProductGateway, Depends(_catalogue)]
QuotesDep = Annotated[TradeGateway, Depends(_quotes)]


def _cart_service(
    session: AsyncSession, catalogue: ProductGateway, components: Components
) -> CartService:
    return CartService(
        session,
        catalogue,
        clock=components.clock,
        max_lines=components.settings.max_cart_lines,
        max_quantity=components.settings.max_quantity_per_line,
    )


async def _carts(
    session: SessionDep, catalogue: CatalogueDep, components: ComponentsDep
) -> CartService:
    return _cart_service(session, catalogue, components)


async def _carts_read(
    session: ReadSessionDep, catalogue: CatalogueDep, components: ComponentsDep
) -> CartService:
    return _cart_service(session, catalogue, components)


async def _checkout(
    session: SessionDep, catalogue: CatalogueDep, quotes: QuotesDep, components: ComponentsDep
) -> CheckoutService:
    return CheckoutService(session, catalogue, quotes, clock=components.clock)


def _order_service(session: AsyncSession, components: Components) -> OrderService:
    return OrderService(
        session,
        clock=components.clock,
        payment_timeout=components.payment_timeout,
    )


async def _orders(session: SessionDep, components: ComponentsDep) -> OrderService:
    return _order_service(session, components)


async def _orders_read(session: ReadSessionDep, components: ComponentsDep) -> OrderService:
    return _order_service(session, components)


CartsDep = Annotated[CartService, Depends(_carts)]
"""Cart edits on the read-write request session."""
CartsReadDep = Annotated[CartService, Depends(_carts_read)]
"""Cart reads on the read-only session (the replica when one is configured)."""
CheckoutDep = Annotated[CheckoutService, Depends(_checkout)]
"""Checkout on the read-write request session."""
OrdersDep = Annotated[OrderService, Depends(_orders)]
"""Order changes on the read-write request session."""
OrdersReadDep = Annotated[OrderService, Depends(_orders_read)]
"""Order reads on the read-only session."""


@dataclass(frozen=True, slots=True)
class Outbox:
    """The event sink bound to the request's session: events commit with the change."""

    sink: EventSink
    session: AsyncSession

    async def emit(self, events: list[OutgoingEvent]) -> None:
        """Hand a domain change's events to the outbox port."""
        await emit_all(self.sink, self.session, events)


async def _outbox(session: SessionDep, components: ComponentsDep) -> Outbox:
    return Outbox(components.event_sink, session)


OutboxDep = Annotated[Outbox, Depends(_outbox)]
"""The outbox on the same session as CartsDep, CheckoutDep and OrdersDep."""

_PROBLEM_TEXT = {
    401: "No valid bearer token",
    403: "Not allowed for the caller's role",
    404: "No such resource (or not the caller's)",
    409: "Conflicts with the current state",
    422: "Invalid input (field errors in `errors`)",
    502: "The product or trade service answered with a failure",
    503: "The product or trade service cannot be reached",
    504: "The product or trade service did not answer in time",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json responses a route can give, in this API's words."""
    return problem_responses(*statuses, descriptions=_PROBLEM_TEXT)
