"""Domain errors and their RFC 9457 problem+json rendering and documentation.

Domain code raises these (never HTTPException); one set of handlers renders
every error, including request validation errors and unexpected exceptions,
and the OpenAPI document says so: every 4xx/5xx response is
application/problem+json with the :class:`Problem` schema.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("meshmart.errors")

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://meshmart.dev/problems/"


class DomainError(Exception):
    """Base class: a business rule said no. Subclasses fix the HTTP status."""

    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"
    commit_session: bool = False
    """The work done before this error is kept, e.g. security bookkeeping.

    Normally a domain error rolls the request's session back. A failed login
    that counts towards a lockout must be committed although the request
    fails, or the failure would undo the protection: such errors set this.
    """

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


# --- OpenAPI -------------------------------------------------------------------


class FieldError(BaseModel):
    """One invalid field of a problem (request validation sends all four keys)."""

    field: str
    message: str
    location: str | None = None
    type: str | None = None


class Problem(BaseModel):
    """An RFC 9457 problem detail (application/problem+json), as every error is rendered."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


_COMPONENTS_REF = "#/components/schemas/"
# FastAPI's own 422 schemas, left unused once its 422 responses say problem+json.
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def problem_responses(
    *statuses: int, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries of a route for the errors with ``statuses``.

    Each is described by ``descriptions[status]`` or the HTTP reason phrase;
    create_app documents its body as application/problem+json (:class:`Problem`).
    The 422 of request validation need not be listed: FastAPI adds it to
    every route with parameters or a body.
    """
    texts = descriptions or {}
    return {
        status: {"description": texts.get(status) or HTTPStatus(status).phrase}
        for status in sorted(set(statuses))
    }


def _problem_components() -> dict[str, Any]:
    schema = Problem.model_json_schema(
        ref_template=_COMPONENTS_REF + "{model}", mode="serialization"
    )
    components: dict[str, Any] = schema.pop("$defs", {})
    components[Problem.__name__] = schema
    return components


def document_problems(openapi: dict[str, Any]) -> dict[str, Any]:
    """Make every 4xx/5xx response of an OpenAPI document application/problem+json.

    FastAPI documents each response under the route's own media type, and its
    automatic 422 with its own HTTPValidationError schema; the error handlers
    send :class:`Problem` bodies instead. Changes ``openapi`` in place and returns it.
    """
    problem_ref = _COMPONENTS_REF + Problem.__name__
    documented = False
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):  # path-level "parameters" is a list
                continue
            for code, response in operation.get("responses", {}).items():
                if str(code)[:1] in ("4", "5"):
                    response["content"] = {PROBLEM_JSON: {"schema": {"$ref": problem_ref}}}
                    documented = True
    if documented:
        openapi.setdefault("components", {}).setdefault("schemas", {}).update(_problem_components())
    schemas: dict[str, Any] = openapi.get("components", {}).get("schemas", {})
    for name in _FASTAPI_VALIDATION_SCHEMAS:  # HTTPValidationError first: it refers to the other
        if name in schemas and f'"{_COMPONENTS_REF}{name}"' not in json.dumps(openapi):
            del schemas[name]
    return openapi


def install_problem_openapi(app: FastAPI) -> None:
    """Document the errors of ``app`` as they are rendered (see :func:`document_problems`)."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(default_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
