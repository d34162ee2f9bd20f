"""Liveness and readiness.

/healthz says the process is up and depends on nothing. /readyz runs every
registered check (database, and later bus and registry) with a timeout and
answers 503 problem+json naming the failing parts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from meshmart_common.errors import problem_response

logger = logging.getLogger("meshmart.health")

ReadinessCheck = Callable[[], Awaitable[None]]


class HealthRead(BaseModel):
    """Liveness answer."""

    status: str
    service: str


class ReadinessRead(BaseModel):
    """Readiness answer: each check's result ("ok" when ready)."""

    status: str
    checks: dict[str, str]


CHECK_TIMEOUT_SECONDS = 2.0


class Readiness:
    """Named readiness checks; each raises (or times out) when its part is not ready."""

    def __init__(self) -> None:
        self.checks: dict[str, ReadinessCheck] = {}

    def add(self, name: str, check: ReadinessCheck) -> None:
        """Register ``check`` under ``name`` (database, bus, registry, ...)."""
        self.checks[name] = check

    async def run(self) -> dict[str, str]:
        """Run all checks concurrently; map each name to "ok" or the failure."""

        async def one(name: str, check: ReadinessCheck) -> tuple[str, str]:
            try:
                await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
            except TimeoutError:
                return name, "timeout"
            except Exception as exc:
                logger.warning("readiness check %s failed: %r", name, exc)
                return name, f"failing: {type(exc).__name__}"
            return name, "ok"

        results = await asyncio.gather(*(one(n, c) for n, c in self.checks.items()))
        return dict(results)


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
        """Readiness: every dependency (database, bus, registry) answers."""
        readiness: Readiness = request.app.state.readiness
        results = await readiness.run()
        failing = sorted(name for name, result in results.items() if result != "ok")
        if failing:
            return problem_response(
                503,
                title="Not ready",
                detail="Not ready: " + ", ".join(f"{n} ({results[n]})" for n in failing),
                code="not-ready",
                instance=request.url.path,
                extra={"checks": results, "failing": failing},
            )
        return JSONResponse({"status": "ready", "checks": results})

    return router
