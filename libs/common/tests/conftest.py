"""A tiny "widgets" service built on meshmart_common, for the library's own tests.

It gives the plugin (meshmart_common.testing) the two fixtures it needs,
``service_metadata`` and ``service_app_factory``, and has routes that exercise
every shared part: each domain error, an unexpected crash, the auth
dependencies, the session's commit and rollback, and pagination.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import MetaData, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from meshmart_common.app import create_app
from meshmart_common.auth import AdminUser, CurrentUser
from meshmart_common.db import ReadSessionDep, SessionDep, naming_metadata
from meshmart_common.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from meshmart_common.pagination import Page, PageDep
from meshmart_common.settings import Environment, ServiceSettings
from meshmart_common.testing import TestContext
from meshmart_common.tracing import use_tracer_provider


class Base(DeclarativeBase):
    """Declarative base of the widgets test service."""

    metadata = naming_metadata()


class Widget(Base):
    """A named thing; names are unique."""

    __tablename__ = "widgets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class WidgetSettings(ServiceSettings):
    """Settings of the widgets test service."""

    service_name: str = "widgets"


class WidgetCreate(BaseModel):
    """Body of POST /widgets."""

    name: str = Field(min_length=1, max_length=100)


class WidgetRead(BaseModel):
    """A widget as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str


class PrincipalRead(BaseModel):
    """The verified caller as the API shows it."""

    user_id: int
    role: str
    email: str | None


class AttemptRecorded(Conflict):
    """Refused, but the attempt stays recorded (like a failed login counting to a lockout)."""

    commit_session = True


DOMAIN_ERRORS: dict[str, Callable[[], DomainError]] = {
    "bad-request": lambda: BadRequest("The widget cannot be bent that way."),
    "unauthorized": lambda: Unauthorized("The session is over."),
    "not-found": lambda: NotFound("Widget 42 does not exist."),
    "conflict": lambda: Conflict("A widget with this name exists."),
    "forbidden": lambda: Forbidden("Only the owner may paint this widget."),
    "validation-failed": lambda: ValidationFailed(
        "The widget breaks a rule.",
        errors=[
            {
                "field": "name",
                "location": "body",
                "message": "must not be reserved",
                "type": "reserved",
            }
        ],
    ),
    "too-many-requests": lambda: TooManyRequests("Slow down.", retry_after=30),
    "service-unavailable": lambda: ServiceUnavailable("The paint shop is closed."),
}


widgets = APIRouter(prefix="/widgets", tags=["widgets"])


@widgets.post("", status_code=201)
async def create_widget(body: WidgetCreate, session: SessionDep) -> WidgetRead:
    """Create a widget."""
    widget = Widget(name=body.name)
    session.add(widget)
    await session.flush()
    return WidgetRead.model_validate(widget)


@widgets.post("/unflushed", status_code=201)
async def create_widget_unflushed(body: WidgetCreate, session: SessionDep) -> dict[str, str]:
    """Create a widget whose INSERT only runs at commit time."""
    session.add(Widget(name=body.name))
    return {"name": body.name}


@widgets.post("/write-then-fail")
async def create_widget_then_fail(
    body: WidgetCreate, session: SessionDep, crash: bool = False, keep: bool = False
) -> WidgetRead:
    """Write a widget, then fail: a domain error, a crash (?crash=true) or one that keeps it."""
    session.add(Widget(name=body.name))
    await session.flush()
    if crash:
        raise RuntimeError("the paint exploded")
    if keep:
        raise AttemptRecorded("Refused, but the attempt is on record.")
    raise Conflict("Changed my mind.")


@widgets.get("")
async def list_widgets(session: ReadSessionDep, page: PageDep) -> Page[WidgetRead]:
    """List widgets by id."""
    total = await session.scalar(select(func.count()).select_from(Widget))
    rows = await session.scalars(
        select(Widget).order_by(Widget.id).offset(page.offset).limit(page.page_size)
    )
    return Page[WidgetRead](
        items=[WidgetRead.model_validate(w) for w in rows],
        total=total or 0,
        page=page.page,
        page_size=page.page_size,
    )


@widgets.get("/{widget_id}")
async def get_widget(widget_id: int, session: ReadSessionDep) -> WidgetRead:
    """One widget."""
    widget = await session.get(Widget, widget_id)
    if widget is None:
        raise NotFound(f"Widget {widget_id} does not exist.")
    return WidgetRead.model_validate(widget)


errors = APIRouter(prefix="/errors", tags=["errors"])


@errors.get("/crash")
async def crash() -> dict[str, str]:
    """Fail with an unexpected exception."""
    raise RuntimeError("boom: secret internals")


@errors.get("/{kind}")
async def raise_domain_error(kind: str) -> dict[str, str]:
    """Raise the domain error named ``kind``."""
    factory = DOMAIN_ERRORS.get(kind)
    if factory is None:
        raise NotFound(f"No error kind {kind}.")
    raise factory()


auth = APIRouter(tags=["auth"])


@auth.get("/me")
async def me(principal: CurrentUser) -> PrincipalRead:
    """The caller."""
    return PrincipalRead(user_id=principal.user_id, role=principal.role, email=principal.email)


@auth.get("/admin/ping")
async def admin_ping(principal: AdminUser) -> PrincipalRead:
    """Admins only."""
    return PrincipalRead(user_id=principal.user_id, role=principal.role, email=principal.email)


def build_widget_app(settings: WidgetSettings) -> FastAPI:
    """Create the widgets test app."""
    return create_app(
        settings,
        title="MeshMart widgets test service",
        description="Exercises meshmart_common.",
        routers=[widgets, errors, auth],
    )


@pytest.fixture
def service_metadata() -> MetaData:
    """The widgets service's tables."""
    return Base.metadata


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., FastAPI]:
    """``make_app(database_url=..., **settings)`` -> a widgets app of its own."""

    def make(**overrides: Any) -> FastAPI:
        values: dict[str, Any] = {"environment": Environment.TEST, "var_dir": tmp_path}
        values.update(overrides)
        return build_widget_app(WidgetSettings(**values))

    return make


@pytest.fixture
def service_app_factory(make_app: Callable[..., FastAPI]) -> Callable[[TestContext], FastAPI]:
    """Build the widgets app on the test database."""

    def factory(ctx: TestContext) -> FastAPI:
        return make_app(database_url=ctx.database_url, var_dir=ctx.tmp_path)

    return factory


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own OTEL_* variables must not leak into the library's tests."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span of the test, kept in memory (always sampled)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "probe"}), sampler=ALWAYS_ON
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with use_tracer_provider(provider):
        yield exporter
    provider.shutdown()
