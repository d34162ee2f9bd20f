"""Domain errors and their RFC 9457 problem+json rendering.

Domain code raises these (never HTTPException); one set of handlers renders
every error, including request validation errors and unexpected exceptions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("meshmart.errors")

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://meshmart.dev/problems/"


class DomainError(Exception):
    """Base class: a business rule said no. Subclasses fix the HTTP status."""

    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = list(errors) if errors else None
        self.headers = headers or {}


class BadRequest(DomainError):
    """The request cannot be honoured as sent."""


class ValidationFailed(DomainError):
    """Input passed schema validation but broke a business rule."""

    status = 422
    code = "validation-failed"
    title = "Validation failed"


class Unauthorized(DomainError):
    """No valid credentials."""

    status = 401
    code = "unauthorized"
    title = "Unauthorized"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        # RFC 9110: a 401 always names the scheme, even when the caller adds headers.
        kwargs["headers"] = {"WWW-Authenticate": "Bearer", **(kwargs.get("headers") or {})}
        super().__init__(detail, **kwargs)


class Forbidden(DomainError):
    """Authenticated, but not allowed."""

    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(DomainError):
    """The resource does not exist (or is not visible to the caller)."""

    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(DomainError):
    """The request conflicts with the current state."""

    status = 409
    code = "conflict"
    title = "Conflict"


class TooManyRequests(DomainError):
    """Slow down; ``retry_after`` seconds are sent in Retry-After."""

    status = 429
    code = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = retry_after


class ServiceUnavailable(DomainError):
    """A dependency is not available right now."""

    status = 503
    code = "service-unavailable"
    title = "Service unavailable"


def problem_response(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    code: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """Build an application/problem+json response (RFC 9457)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    slug = code or phrase.lower().replace(" ", "-")
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": title or phrase,
        "status": status,
        "detail": detail or title or phrase,
    }
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    fields = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        fields.append(
            {
                "field": ".".join(loc[1:]) if len(loc) > 1 else ".".join(loc),
                "location": loc[0] if loc else "body",
                "message": str(err.get("msg", "invalid")),
                "type": str(err.get("type", "invalid")),
            }
        )
    return fields


def install_error_handlers(app: FastAPI) -> None:
    """Render every error of ``app`` as problem+json."""

    async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return problem_response(
            exc.status,
            title=exc.title,
            detail=exc.detail,
            code=exc.code,
            instance=request.url.path,
            errors=exc.errors,
            headers=exc.headers,
            extra={"request_id": _request_id(request)},
        )

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            422,
            title="Validation failed",
            detail="The request did not match the expected schema.",
            code="validation-failed",
            instance=request.url.path,
            errors=_field_errors(exc),
            extra={"request_id": _request_id(request)},
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(
            exc.status_code,
            detail=str(exc.detail) if exc.detail else None,
            instance=request.url.path,
            headers=dict(exc.headers) if exc.headers else None,
            extra={"request_id": _request_id(request)},
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = _request_id(request)
        logger.exception("unhandled error request_id=%s path=%s", request_id, request.url.path)
        # Starlette runs this handler outside every middleware, so the request
        # id middleware cannot add its header here: add it ourselves.
        return problem_response(
            500,
            title="Internal server error",
            detail="An unexpected error occurred; it has been logged.",
            code="internal-error",
            instance=request.url.path,
            headers={"X-Request-ID": request_id} if request_id else None,
            extra={"request_id": request_id},
        )

    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
