"""Fixtures of the order service tests (the shared ones come from meshmart_common.testing)."""

from collections.abc import AsyncIterator, Callable
from itertools import count

import httpx
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import MetaData

from meshmart_common.testing import TestContext, TokenMaker
from order_service.components import Components
from order_service.gateways.upstreams import Upstreams
from order_service.main import build_app
from order_service.repository.models import Base
from order_service.settings import Settings
from services.order.tests.events import OutboxReader, SagaDelivery
from services.order.tests.shop import Shop
from services.order.tests.stubs import (
    PRODUCT_URL,
    TRADE_URL,
    FakeClock,
    ProductStub,
    TradeStub,
)


@pytest.fixture
def service_metadata() -> MetaData:
    """The order service's tables."""
    return Base.metadata


@pytest.fixture
def service_app_factory() -> Callable[[TestContext], FastAPI]:
    """Build the order app on the test database, its bus a LocalBus file in tmp_path."""

    def factory(ctx: TestContext) -> FastAPI:
        return build_app(
            ctx.settings(
                Settings,
                local_bus_path=ctx.tmp_path / "bus.db",
                outbox_poll_interval_ms=20,
                consumer_retry_base_seconds=0.05,
                consumer_retry_max_seconds=0.2,
            )
        )

    return factory


# --- added: product and trade stand-ins, the outbox, the clock, the saga -------------

UPSTREAM_TIMEOUT_SECONDS = 0.5
"""Deadline of calls to the stubs: short, so "slow" outages fail fast."""

NEVER_OPEN = 1000
"""A breaker failure threshold no test reaches."""


@pytest.fixture
def product_service() -> ProductStub:
    """The stubbed product service (its catalogue starts empty)."""
    return ProductStub()


@pytest.fixture
def trade_service() -> TradeStub:
    """The stubbed trade service (coupons SAVE10 and FLAT500; no one has points)."""
    return TradeStub()


@pytest.fixture
def components(app: FastAPI) -> Components:
    """The app's shared components (settings, clock, outbox port, upstreams)."""
    found: Components = app.state.components
    return found


@pytest.fixture
async def upstreams(
    client: AsyncClient,
    components: Components,
    product_service: ProductStub,
    trade_service: TradeStub,
) -> AsyncIterator[Upstreams]:
    """Point the app's product and trade clients at the stubs.

    The clients are built like the app builds them (Upstreams.from_settings),
    except that their circuit breakers never open: these tests expect an
    outage to end the moment a stub is back up. Breakers and their cool-down
    are tested in test_gateways.py with a hand-moved clock. It runs after the
    app has started (``client``), so that nothing done at start-up replaces them.
    """
    http = httpx.AsyncClient(
        mounts={PRODUCT_URL: product_service.transport, TRADE_URL: trade_service.transport}
    )
    settings = components.settings.model_copy(
        update={
            "product_url": PRODUCT_URL,
            "trade_url": TRADE_URL,
            "upstream_timeout_seconds": UPSTREAM_TIMEOUT_SECONDS,
            "breaker_failure_threshold": NEVER_OPEN,
        }
    )
    stubbed = Upstreams.from_settings(settings, http)
    components.upstreams = stubbed
    yield stubbed
    await http.aclose()


@pytest.fixture
def outbox(app: FastAPI) -> OutboxReader:
    """The app's outbox table (what the relay publishes)."""
    return OutboxReader(app.state.database)


@pytest.fixture
def clock(components: Components) -> FakeClock:
    """A hand-moved clock in place of the app's."""
    fake = FakeClock()
    components.clock = fake
    return fake


@pytest.fixture
async def api(client: AsyncClient, upstreams: Upstreams) -> AsyncClient:
    """The order API client, with product and trade stubbed."""
    return client


@pytest.fixture
def headers_of(make_token: TokenMaker) -> Callable[..., dict[str, str]]:
    """``headers_of(user_id, role="customer")`` -> the Authorization header of that user."""

    def make(user_id: int, role: str = "customer") -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token(user_id, role)}"}

    return make


@pytest.fixture
def shop(api: AsyncClient, product_service: ProductStub) -> Shop:
    """Helpers to fill carts and check out through the API."""
    return Shop(api=api, products=product_service, numbers=count(1))


@pytest.fixture
def deliver(app: FastAPI, api: AsyncClient) -> SagaDelivery:
    """``await deliver(payload)``: a saga reply handled by the app's consumer, committed."""
    return SagaDelivery(app.state.database, app.state.consumers)
