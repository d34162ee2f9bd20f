"""Liveness and readiness.

/healthz says the process is up and depends on nothing. /readyz runs every
registered check (database, bus, registry) with a timeout and answers 503
problem+json naming the failing parts.

A check fails by raising (or timing out). It may instead return a string: the
part works, but in a degraded way (the registry serving its last known list
while Consul is away). /readyz then still answers 200, with status
"degraded" and that reason: Consul's own health check calls /readyz, and a
registry blip must not make Consul deregister every instance at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from meshmart_common.errors import problem_response

logger = logging.getLogger("meshmart.health")

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Raises when its part is not ready; returns None when it is, or why it is degraded."""

DEGRADED_PREFIX = "degraded: "


class HealthRead(BaseModel):
    """Liveness answer."""

    status: str
    service: str


class ReadinessRead(BaseModel):
    """Readiness answer: status "ready" or "degraded", and each check's result
    ("ok", or "degraded: <reason>")."""

    status: str
    checks: dict[str, str]


CHECK_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    """The outcome of all checks: each one's result, and which failed or are degraded."""

    checks: dict[str, str]
    failing: list[str]
    degraded: list[str]

    @property
    def status(self) -> str:
        """One of "ready", "degraded" or "not-ready"."""
        if self.failing:
            return "not-ready"
        return "degraded" if self.degraded else "ready"


class Readiness:
    """Named readiness checks; each raises (or times out) when its part is not ready,
    or returns a reason when the part works in a degraded way."""

    def __init__(self) -> None:
        self.checks: dict[str, ReadinessCheck] = {}

    def add(self, name: str, check: ReadinessCheck) -> None:
        """Register ``check`` under ``name`` (database, bus, registry, ...)."""
        self.checks[name] = check

    async def report(self) -> ReadinessReport:
        """Run all checks concurrently and sort them into ok, degraded and failing."""

        async def one(name: str, check: ReadinessCheck) -> tuple[str, str, str]:
            try:
                reason = await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
            except TimeoutError:
                return name, "failing", "timeout"
            except Exception as exc:
                logger.warning("readiness check %s failed: %r", name, exc)
                return name, "failing", f"failing: {type(exc).__name__}"
            if isinstance(reason, str) and reason:
                return name, "degraded", DEGRADED_PREFIX + reason
            return name, "ok", "ok"

        results = await asyncio.gather(*(one(n, c) for n, c in self.checks.items()))
        return ReadinessReport(
            checks={name: text for name, _, text in results},
            failing=sorted(name for name, state, _ in results if state == "failing"),
            degraded=sorted(name for name, state, _ in results if state == "degraded"),
        )

    async def run(self) -> dict[str, str]:
        """Run all checks concurrently; map each name to "ok", "degraded: ..." or the failure."""
        return (await self.report()).checks


def health_router() -> APIRouter:
    """Routes /healthz and /readyz (outside /api/v1, tagged "platform" in OpenAPI)."""
    router = APIRouter(tags=["platform"])

    @router.get("/healthz", response_model=HealthRead)
    async def healthz(request: Request) -> dict[str, Any]:
        """Liveness: the process is up (checks no dependency)."""
        return {"status": "ok", "service": request.app.state.settings.service_name}

    @router.get(
        "/readyz",
        response_model=ReadinessRead,
        responses={503: {"description": "A dependency is not ready (problem+json naming it)"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: every dependency (database, bus, registry) answers; 200 when
        some only work degraded (status "degraded"), 503 naming the failing ones."""
        readiness: Readiness = request.app.state.readiness
        report = await readiness.report()
        results = report.checks
        failing = report.failing
        if failing:
            return problem_response(
                503,
                title="Not ready",
                detail="Not ready: " + ", ".join(f"{n} ({results[n]})" for n in failing),
                code="not-ready",
                instance=request.url.path,
                extra={"checks": results, "failing": failing},
            )
        return JSONResponse({"status": report.status, "checks": results})

    return router
